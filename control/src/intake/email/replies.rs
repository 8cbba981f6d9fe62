//! Reply mails: an acknowledgement listing the calls a message created, or a rejection
//! naming the rule it broke, queued in the store's durable outbox and sent through the
//! configured relay (`email.reply_relay`, plain SMTP with `lettre`), retried with backoff.
//!
//! No reply goes to the null sender (`MAIL FROM:<>`) or to a message marked
//! `Auto-Submitted` (RFC 3834), and rejections go only to senders that proved they are the
//! tenant's (AUTH or DKIM): a forged sender gets its refusal in the SMTP reply, never by mail.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use time::OffsetDateTime;

use crate::smtp::Reply;
use crate::store::{NewReply, ReplyItem, ReplyStore};

/// Waits before each retry; after the last one the reply is dead.
pub const BACKOFF: [Duration; 5] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(7200),
];

/// How often the worker looks for due replies.
const POLL: Duration = Duration::from_secs(1);

/// The acknowledgement of the calls created for `tenant`, as (id, destination), to `to`.
pub fn acknowledgement(
    to: &str,
    tenant: &str,
    subject: Option<&str>,
    message_id: Option<&str>,
    records: &[(&str, &str)],
) -> NewReply {
    let mut body = format!(
        "Outdial queued {} call{} for tenant {tenant}:\n\n",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    );
    for (id, destination) in records {
        body.push_str(&format!("  {id}  {destination}\n"));
    }
    body.push_str("\nFollow each one with GET /v1/calls/{id} on the Outdial API.\n");
    NewReply {
        tenant: Some(tenant.to_owned()),
        to: to.to_owned(),
        subject: format!("Accepted: {}", subject.unwrap_or("your call request")),
        in_reply_to: message_id.map(str::to_owned),
        body,
    }
}

/// The rejection of a message (the `refusal` it was answered) to `to`.
pub fn rejection(
    to: &str,
    tenant: Option<&str>,
    subject: Option<&str>,
    message_id: Option<&str>,
    refusal: &Reply,
) -> NewReply {
    let (class, subject_code, detail) = refusal.enhanced;
    let body = format!(
        "Outdial refused your call request; nothing of it was stored:\n\n  {} {class}.{subject_code}.{detail} {}\n\nFix the message and send it again (docs/email.md lists the rules).\n",
        refusal.code, refusal.text
    );
    NewReply {
        tenant: tenant.map(str::to_owned),
        to: to.to_owned(),
        subject: format!("Refused: {}", subject.unwrap_or("your call request")),
        in_reply_to: message_id.map(str::to_owned),
        body,
    }
}

/// Sends the outbox's replies through one relay.
pub struct ReplySender {
    store: Arc<dyn ReplyStore>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl ReplySender {
    /// A sender through `relay` (`host:port`, plain SMTP) as `from`.
    pub fn new(store: Arc<dyn ReplyStore>, relay: &str, from: &str) -> Result<Self, String> {
        let (host, port) = relay
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("`email.reply_relay` must be host:port, not {relay:?}"))?;
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("`email.reply_from` {from:?} is not an address: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(Duration::from_secs(30)))
            .build();
        Ok(Self {
            store,
            transport,
            from,
        })
    }

    /// Sends every reply due at `now`; returns how many were sent.
    pub async fn send_due(&self, now: OffsetDateTime) -> usize {
        let due = match self.store.due_replies(now, 32).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the reply outbox");
                return 0;
            }
        };
        let mut sent = 0;
        for item in due {
            let outcome = self.send(&item).await;
            let recorded = match outcome {
                Ok(()) => {
                    sent += 1;
                    self.store.reply_sent(item.seq).await
                }
                Err((error, permanent)) => {
                    let retry = BACKOFF
                        .get(item.tries as usize)
                        .filter(|_| !permanent)
                        .map(|wait| now + *wait);
                    tracing::warn!(seq = item.seq, tries = item.tries + 1, dead = retry.is_none(), error = %error, "reply mail not sent");
                    self.store.reply_failed(item.seq, error, retry, now).await
                }
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot update the reply outbox");
            }
        }
        sent
    }

    /// One reply; `Err((why, permanent))`.
    async fn send(&self, item: &ReplyItem) -> Result<(), (String, bool)> {
        let to = item
            .reply
            .to
            .parse::<Mailbox>()
            .map_err(|e| (format!("{:?} is not an address: {e}", item.reply.to), true))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(item.reply.subject.clone())
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-replied".to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN);
        if let Some(id) = &item.reply.in_reply_to {
            builder = builder.in_reply_to(format!("<{id}>"));
        }
        let message = builder
            .body(item.reply.body.clone())
            .map_err(|e| (e.to_string(), true))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            let permanent = e.is_permanent();
            (e.to_string(), permanent)
        })
    }

    /// Sends due replies until the process stops.
    pub async fn run(self) {
        loop {
            self.send_due(OffsetDateTime::now_utc()).await;
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_list_the_calls_or_the_rule() {
        let ack = acknowledgement(
            "s@c",
            "acme",
            Some("Hi"),
            Some("m@c"),
            &[("call_x", "sip:a@b")],
        );
        assert_eq!(ack.subject, "Accepted: Hi");
        assert!(
            ack.body.contains("queued 1 call for tenant acme")
                && ack.body.contains("call_x  sip:a@b")
        );
        assert_eq!(ack.in_reply_to.as_deref(), Some("m@c"));
        let refused = Reply::new(554, (5, 6, 0), "e164: Destination ...");
        let no = rejection("s@c", None, None, None, &refused);
        assert_eq!(no.subject, "Refused: your call request");
        assert!(
            no.body.contains("554 5.6.0 e164: Destination"),
            "{}",
            no.body
        );
    }
}
