//! Blind transfer of an answered call (RFC 3515): the REFER we send in the call's dialog,
//! its responses, the NOTIFYs of the implicit `refer` subscription, and hanging up our leg
//! once the callee reports the target answered.

use std::time::{Duration, Instant};

use super::{Endpoint, Owner, SipEvent, random_token};
use crate::api::{CallId, Disposition, Outcome, TransferError, TransferOutcome};
use crate::sip::message::{Message, Uri};
use crate::sip::refer::{ReferClient, ReferParams, ReferState, TransferReport};

impl Endpoint {
    /// Sends REFER in the answered call's dialog (RFC 3515 §2.4.1): `Refer-To: <refer_to>`,
    /// `Referred-By` our URI. The outcome comes as [`SipEvent::TransferDone`]: the callee's
    /// final sipfrag (a 2xx also hangs up our leg: BYE and `Ended`), the REFER's refusal,
    /// its Timer F, or `NoAnswer` when no final sipfrag arrives within `connect_timeout` of
    /// the REFER being accepted. Errors are returned and nothing is sent.
    pub fn refer(
        &mut self,
        now: Instant,
        call: CallId,
        id: u32,
        refer_to: &str,
        connect_timeout: Duration,
    ) -> Result<(), TransferError> {
        if refer_to.is_empty() || Uri::parse(refer_to).is_err() {
            return Err(TransferError::BadDestination);
        }
        let local = self.config.local;
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let Some(state) = self.calls.get_mut(&call) else {
            return Err(TransferError::NotConnected);
        };
        if state.ended || !state.is_answered() {
            return Err(TransferError::NotConnected);
        }
        if state
            .transfer
            .as_ref()
            .is_some_and(|transfer| transfer.state() != ReferState::Done)
        {
            return Err(TransferError::InProgress);
        }
        let Some(dialog) = state.dialog.as_mut() else {
            return Err(TransferError::NotConnected);
        };
        let refer_to_header = format!("<{refer_to}>");
        let referred_by = format!("<{}>", dialog.local_uri);
        let contact = super::contact_value(dialog.next_hop_transport().0, local);
        let mut request = Vec::new();
        dialog.write_request_with(
            &mut request,
            "REFER",
            local,
            &branch,
            &self.config.user_agent,
            &[
                ("Refer-To", &refer_to_header),
                ("Referred-By", &referred_by),
                ("Contact", &contact),
            ],
        );
        let destination = dialog.next_hop().unwrap_or(state.destination);
        let transport = super::switch_if_large(dialog, self.config.udp_mtu_switch, &mut request);
        if let Some(previous) = state.transfer.take() {
            self.by_branch.remove(previous.branch());
        }
        state.transfer = Some(ReferClient::new(
            now,
            self.timing,
            transport,
            destination,
            request,
            ReferParams {
                id,
                refer_to: refer_to.to_owned(),
                branch: branch.clone(),
                connect_timeout,
            },
        ));
        self.by_branch.insert(branch, call);
        self.touch(Owner::Call(call));
        Ok(())
    }

    /// A response whose CSeq method is REFER, on the branch of this call's transfer.
    pub(super) fn on_refer_response(
        &mut self,
        now: Instant,
        id: CallId,
        branch: &str,
        response: &Message<'_>,
    ) {
        let report = self
            .calls
            .get_mut(&id)
            .and_then(|call| call.transfer.as_mut())
            .filter(|transfer| transfer.branch() == branch)
            .and_then(|transfer| transfer.handle_response(now, response));
        if let Some(report) = report {
            self.transfer_done(now, id, report);
        }
    }

    /// A NOTIFY in the call's dialog: the status to answer it with. An outcome it carries
    /// is acted on after the answer is queued ([`Endpoint::after_notify`]), so the 200
    /// goes out before a BYE it causes.
    pub(super) fn on_notify(&mut self, now: Instant, id: CallId, notify: &Message<'_>) -> u16 {
        let Some(call) = self.calls.get_mut(&id) else {
            return 481;
        };
        if let Some(dialog) = call.dialog.as_mut() {
            dialog.accept_remote_cseq(notify.cseq().map_or(0, |c| c.number));
        }
        // No REFER of ours: no subscription for this NOTIFY (RFC 6665 §4.1.3).
        let Some(transfer) = call.transfer.as_mut() else {
            return 481;
        };
        let answer = transfer.handle_notify(now, notify);
        if let Some(report) = answer.report {
            self.notified = Some((id, report));
        }
        answer.status
    }

    /// Acts on the outcome the NOTIFY just answered carried, if any.
    pub(super) fn after_notify(&mut self, now: Instant) {
        if let Some((id, report)) = self.notified.take() {
            self.transfer_done(now, id, report);
        }
    }

    /// Reports a transfer's end; after a successful one, hangs up our leg with BYE.
    pub(super) fn transfer_done(&mut self, now: Instant, id: CallId, report: TransferReport) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let transferred = report.result == Ok(TransferOutcome::Transferred);
        let target = call
            .transfer
            .as_ref()
            .map_or_else(String::new, |transfer| transfer.refer_to().to_owned());
        let connected = call.is_answered() && !call.ended;
        let status = call.final_status;
        let reason = format!(
            "transferred to {target} (blind transfer: {})",
            report.detail
        );
        self.events.push_back(SipEvent::TransferDone {
            call: id,
            id: report.id,
            result: report.result,
            detail: report.detail,
        });
        if transferred && connected {
            self.send_bye(now, id);
            self.end(
                id,
                Outcome {
                    disposition: Disposition::Completed,
                    sip_status: status,
                    reason,
                },
            );
        }
        self.touch(Owner::Call(id));
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::sip::message::{HeaderName, Method, parse_message};
    use crate::sip::{DialParams, SipConfig};

    const UAS: &str = "192.0.2.4:5070";

    struct Harness {
        endpoint: Endpoint,
        now: Instant,
        sent: Vec<(SocketAddr, Vec<u8>)>,
        events: Vec<SipEvent>,
        notify_cseq: u32,
    }

    impl Harness {
        /// An endpoint with call 1 dialed and answered.
        fn answered() -> Self {
            let config = SipConfig {
                local: "192.0.2.1:5060".parse().unwrap(),
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                t4: Duration::from_secs(5),
                user_agent: "outdial-test".into(),
                border: crate::sip::BorderConfig::default(),
                inbound_sources: Vec::new(),
                core: 0,
                max_calls: usize::MAX,
                session_expires: None,
                udp_mtu_switch: super::super::UDP_MTU_SWITCH,
            };
            let t0 = Instant::now();
            let mut h = Self {
                endpoint: Endpoint::new(config, 3),
                now: t0,
                sent: Vec::new(),
                events: Vec::new(),
                notify_cseq: 0,
            };
            let params = DialParams {
                target: "sip:bob@192.0.2.4:5070",
                destination: None,
                from: "sip:outdial@192.0.2.1",
                sdp_offer: b"v=0\r\n",
                ring_timeout: Duration::from_secs(30),
                max_duration: Duration::from_secs(3600),
                credentials: None,
                asserted_identity: None,
                privacy: None,
                no_response_timeout: None,
                transport: crate::sip::Transport::Udp,
            };
            h.endpoint.dial(t0, CallId(1), &params).unwrap();
            h.drain();
            let invite = h.request("INVITE");
            let ok = h.reply(&invite, "200 OK", "Contact: <sip:bob@192.0.2.4:5070>\r\n");
            h.deliver(&ok);
            h.sent.clear();
            assert!(matches!(h.events.as_slice(), [SipEvent::Answered { .. }]));
            h.events.clear();
            h
        }

        /// Starts transfer `id` of call 1 to `target` and sends the REFER.
        fn refer(&mut self, id: u32, target: &str, connect_timeout: Duration) {
            self.endpoint
                .refer(self.now, CallId(1), id, target, connect_timeout)
                .unwrap();
            self.drain();
        }

        fn drain(&mut self) {
            let mut buf = Vec::new();
            while let Some(to) = self.endpoint.poll_transmit(&mut buf) {
                self.sent.push((to, buf.clone()));
            }
            while let Some(event) = self.endpoint.poll_event() {
                self.events.push(event);
            }
        }

        fn deliver(&mut self, datagram: &[u8]) {
            self.endpoint
                .handle_datagram(self.now, UAS.parse().unwrap(), datagram);
            self.drain();
        }

        fn advance(&mut self, by: Duration) {
            let end = self.now + by;
            while let Some(deadline) = self.endpoint.poll_timeout().filter(|&d| d <= end) {
                self.now = self.now.max(deadline);
                self.endpoint.handle_timeout(self.now);
                self.drain();
            }
            self.now = end;
        }

        /// The last request sent with this method.
        fn request(&self, method: &str) -> Vec<u8> {
            self.sent
                .iter()
                .rev()
                .find(|(_, bytes)| bytes.starts_with(method.as_bytes()))
                .map(|(_, bytes)| bytes.clone())
                .unwrap_or_else(|| panic!("no {method} sent"))
        }

        /// First lines of what was sent, in order.
        fn sent_lines(&self) -> Vec<String> {
            self.sent
                .iter()
                .map(|(_, bytes)| {
                    let text = String::from_utf8_lossy(bytes);
                    text.lines().next().unwrap_or("").to_owned()
                })
                .collect()
        }

        /// A UAS response to `request`, with its To tag `uas`.
        fn reply(&self, request: &[u8], status: &str, extra: &str) -> Vec<u8> {
            let request = parse_message(request).unwrap();
            let copy = |name| request.header(name).unwrap().to_owned();
            let to = copy(HeaderName::To);
            let to = if to.contains("tag=") {
                to
            } else {
                format!("{to};tag=uas")
            };
            format!(
                "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
                copy(HeaderName::Via),
                copy(HeaderName::From),
                copy(HeaderName::CallId),
                copy(HeaderName::CSeq),
            )
            .into_bytes()
        }

        /// A NOTIFY from the callee in the call's dialog.
        fn notify(&mut self, state: &str, sipfrag: &str) -> Vec<u8> {
            let refer_bytes = self.request("REFER");
            let refer = parse_message(&refer_bytes).unwrap();
            let from = refer.header(HeaderName::From).unwrap().to_owned();
            let call_id = refer.call_id().unwrap().to_owned();
            self.notify_cseq += 1;
            format!(
                "NOTIFY sip:outdial@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {UAS};branch=z9hG4bKn{}\r\n\
                 From: <sip:bob@192.0.2.4:5070>;tag=uas\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
                 CSeq: {} NOTIFY\r\nEvent: refer\r\nSubscription-State: {state}\r\n\
                 Content-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{sipfrag}",
                self.notify_cseq,
                self.notify_cseq,
                sipfrag.len()
            )
            .into_bytes()
        }

        fn transfers(&self) -> Vec<(u32, Result<TransferOutcome, TransferError>)> {
            self.events
                .iter()
                .filter_map(|event| match event {
                    SipEvent::TransferDone { id, result, .. } => Some((*id, *result)),
                    _ => None,
                })
                .collect()
        }

        fn ended(&self) -> Vec<Outcome> {
            self.events
                .iter()
                .filter_map(|event| match event {
                    SipEvent::Ended { outcome, .. } => Some(outcome.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn refer_is_sent_in_the_dialog_with_refer_to_referred_by_and_contact() {
        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(20));
        let bytes = h.request("REFER");
        let refer = parse_message(&bytes).unwrap();
        assert_eq!(refer.method(), Some(Method::Other("REFER")));
        assert_eq!(
            refer.request_uri().map(|u| u.as_str()),
            Some("sip:bob@192.0.2.4:5070")
        );
        assert_eq!(refer.cseq().map(|c| c.number), Some(2));
        assert_eq!(refer.to().and_then(|t| t.tag()), Some("uas"));
        assert_eq!(
            refer.header(HeaderName::Other("Refer-To")),
            Some("<sip:agent@192.0.2.9>")
        );
        assert_eq!(
            refer.header(HeaderName::Other("Referred-By")),
            Some("<sip:outdial@192.0.2.1>")
        );
        assert_eq!(
            refer.contact().map(|c| c.uri.as_str()),
            Some("sip:outdial@192.0.2.1:5060")
        );
        // Unanswered by the callee: retransmitted on Timer E like any non-INVITE request.
        h.sent.clear();
        h.advance(Duration::from_millis(500));
        assert_eq!(h.sent_lines().len(), 1);
    }

    #[test]
    fn a_final_ok_sipfrag_transfers_answers_the_notify_then_hangs_up() {
        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(20));
        let accepted = h.reply(&h.request("REFER"), "202 Accepted", "");
        h.deliver(&accepted);
        let trying = h.notify("active;expires=60", "SIP/2.0 100 Trying\r\n");
        h.deliver(&trying);
        assert!(h.events.is_empty(), "{:?}", h.events);
        let ok = h.notify("terminated;reason=noresource", "SIP/2.0 200 OK\r\n");
        h.sent.clear();
        h.deliver(&ok);
        let lines = h.sent_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "SIP/2.0 200 OK", "the NOTIFY is answered first");
        assert!(lines[1].starts_with("BYE "), "{lines:?}");
        let notify_cseq = parse_message(&h.sent[0].1)
            .unwrap()
            .cseq()
            .map(|c| c.number);
        assert_eq!(notify_cseq, Some(2));
        assert_eq!(h.transfers(), [(4, Ok(TransferOutcome::Transferred))]);
        let ended = h.ended();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].disposition, Disposition::Completed);
        assert!(
            ended[0]
                .reason
                .contains("transferred to sip:agent@192.0.2.9"),
            "{}",
            ended[0].reason
        );
        let bye = h.request("BYE");
        let bye_ok = h.reply(&bye, "200 OK", "");
        h.deliver(&bye_ok);
        h.advance(Duration::from_secs(100));
        assert!(h.endpoint.is_idle());
        assert_eq!(h.endpoint.active_calls(), 0);
    }

    #[test]
    fn a_busy_target_leaves_the_call_up_and_a_second_transfer_may_follow() {
        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(20));
        assert_eq!(
            h.endpoint.refer(
                h.now,
                CallId(1),
                5,
                "sip:other@192.0.2.9",
                Duration::from_secs(20)
            ),
            Err(TransferError::InProgress)
        );
        let accepted = h.reply(&h.request("REFER"), "202 Accepted", "");
        h.deliver(&accepted);
        let busy = h.notify("terminated", "SIP/2.0 486 Busy Here\r\n");
        h.sent.clear();
        h.deliver(&busy);
        assert_eq!(h.sent_lines(), ["SIP/2.0 200 OK"]);
        assert_eq!(h.transfers(), [(4, Ok(TransferOutcome::Busy))]);
        assert!(h.ended().is_empty(), "the caller is still with us");
        h.refer(5, "tel:+15550100", Duration::from_secs(20));
        let second = parse_message(&h.request("REFER"))
            .unwrap()
            .cseq()
            .unwrap()
            .number;
        assert_eq!(second, 3);
    }

    #[test]
    fn a_refused_refer_and_a_silent_callee_are_reported() {
        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(20));
        let refused = h.reply(&h.request("REFER"), "403 Forbidden", "");
        h.deliver(&refused);
        assert_eq!(
            h.transfers(),
            [(4, Err(TransferError::Refused { status: 403 }))]
        );
        h.events.clear();
        h.refer(5, "sip:agent@192.0.2.9", Duration::from_secs(20));
        let accepted = h.reply(&h.request("REFER"), "202 Accepted", "");
        h.deliver(&accepted);
        h.advance(Duration::from_secs(19));
        assert!(h.transfers().is_empty());
        h.advance(Duration::from_secs(1));
        assert_eq!(h.transfers(), [(5, Ok(TransferOutcome::NoAnswer))]);
        assert!(h.ended().is_empty());
    }

    #[test]
    fn an_unanswered_refer_is_a_connection_error_after_timer_f() {
        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(60));
        h.advance(Duration::from_millis(31_999));
        assert!(h.transfers().is_empty());
        h.advance(Duration::from_millis(1));
        assert_eq!(h.transfers(), [(4, Err(TransferError::NoResponse))]);
    }

    #[test]
    fn transfers_need_an_answered_call_and_a_uri() {
        let mut h = Harness::answered();
        assert_eq!(
            h.endpoint.refer(
                h.now,
                CallId(9),
                1,
                "sip:a@192.0.2.9",
                Duration::from_secs(1)
            ),
            Err(TransferError::NotConnected)
        );
        for bad in ["", "agent", "sip:a b@192.0.2.9", "<sip:a@192.0.2.9>"] {
            assert_eq!(
                h.endpoint
                    .refer(h.now, CallId(1), 1, bad, Duration::from_secs(1)),
                Err(TransferError::BadDestination),
                "{bad:?}"
            );
        }
        assert!(h.sent.is_empty());
        h.endpoint.hangup(h.now, CallId(1));
        assert_eq!(
            h.endpoint.refer(
                h.now,
                CallId(1),
                1,
                "sip:a@192.0.2.9",
                Duration::from_secs(1)
            ),
            Err(TransferError::NotConnected)
        );
    }

    #[test]
    fn a_notify_without_our_refer_is_481_and_the_callee_hanging_up_ends_the_transfer_silently() {
        // The callee hangs up while the transfer is pending.
        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(20));
        let refer = h.request("REFER");
        let parsed = parse_message(&refer).unwrap();
        let bye = format!(
            "BYE sip:outdial@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {UAS};branch=z9hG4bKbye\r\n\
             From: <sip:bob@192.0.2.4:5070>;tag=uas\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            parsed.header(HeaderName::From).unwrap(),
            parsed.call_id().unwrap()
        );
        h.deliver(bye.as_bytes());
        h.advance(Duration::from_secs(40));
        assert!(h.transfers().is_empty(), "the call ended first: no outcome");
        assert_eq!(h.ended().len(), 1);

        let mut h = Harness::answered();
        h.refer(4, "sip:agent@192.0.2.9", Duration::from_secs(20));
        // A NOTIFY in the dialog when no REFER of ours is known (built from the REFER's
        // headers, then the transfer is forgotten).
        let notify = h.notify("active", "SIP/2.0 100 Trying");
        if let Some(call) = h.endpoint.calls.get_mut(&CallId(1)) {
            call.transfer = None;
        }
        h.sent.clear();
        h.deliver(&notify);
        assert_eq!(
            h.sent_lines(),
            ["SIP/2.0 481 Call/Transaction Does Not Exist"]
        );
    }
}
