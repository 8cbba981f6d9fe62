//! Reply mails: an acknowledgement listing the calls a message created, or a rejection
//! naming the rule it broke, queued in the store's durable outbox and sent through the
//! configured relay (`email.reply_relay`, plain SMTP with `lettre`), retried with backoff.
//! The sender keeps its SMTP sessions open between mails, on sockets with `TCP_NODELAY`
//! (lettre writes a message and its final `.` in two writes, which Nagle's algorithm would
//! hold for the relay's delayed ACK, 40 ms a mail), and drains the outbox without pausing
//! while it is behind.
//!
//! No reply goes to the null sender (`MAIL FROM:<>`) or to a message marked
//! `Auto-Submitted` (RFC 3834), and rejections go only to senders that proved they are the
//! tenant's (AUTH or DKIM): a forged sender gets its refusal in the SMTP reply, never by mail.

use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
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

/// How often the worker looks for due replies when the outbox is drained.
const POLL: Duration = Duration::from_secs(1);

/// Replies read from the outbox at once; a full batch is followed by the next at once.
const BATCH: u32 = 256;

/// Idle relay sessions kept open.
const MAX_IDLE: usize = 4;

/// Time limit for connecting to the relay and for each of its replies.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The relay, `host:port`.
    relay: String,
    from: Mailbox,
    idle: tokio::sync::Mutex<Vec<AsyncSmtpConnection>>,
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
        Ok(Self {
            store,
            relay: format!("{host}:{port}"),
            from,
            idle: tokio::sync::Mutex::new(Vec::new()),
        })
    }

    /// An idle session to the relay, or a new one (EHLO done).
    async fn session(&self) -> Result<AsyncSmtpConnection, String> {
        if let Some(session) = self.idle.lock().await.pop() {
            return Ok(session);
        }
        let relay = &self.relay;
        let stream = tokio::time::timeout(RELAY_TIMEOUT, tokio::net::TcpStream::connect(relay))
            .await
            .map_err(|_| format!("connecting to the relay {relay} timed out"))?
            .map_err(|e| format!("cannot connect to the relay {relay}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let hello = ClientId::default();
        tokio::time::timeout(
            RELAY_TIMEOUT,
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello),
        )
        .await
        .map_err(|_| format!("the relay {relay} did not greet in time"))?
        .map_err(|e| format!("the relay {relay}: {e}"))
    }

    /// Sends every reply due at `now`; returns how many were sent.
    pub async fn send_due(&self, now: OffsetDateTime) -> usize {
        let due = match self.store.due_replies(now, BATCH).await {
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
        let mut session = self.session().await.map_err(|e| (e, false))?;
        let sent = tokio::time::timeout(
            RELAY_TIMEOUT,
            session.send(message.envelope(), &message.formatted()),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {
                let mut idle = self.idle.lock().await;
                if idle.len() < MAX_IDLE {
                    idle.push(session);
                }
                Ok(())
            }
            Ok(Err(e)) => {
                // A refused address leaves the session usable; a broken one is dropped.
                if !session.has_broken() {
                    let mut idle = self.idle.lock().await;
                    if idle.len() < MAX_IDLE {
                        idle.push(session);
                    }
                }
                Err((e.to_string(), e.is_permanent()))
            }
            Err(_) => Err((
                format!("the relay {} did not answer in time", self.relay),
                false,
            )),
        }
    }

    /// Sends due replies until the process stops.
    pub async fn run(self) {
        loop {
            // A full batch means more may be due: go on at once.
            let sent = self.send_due(OffsetDateTime::now_utc()).await;
            if sent < BATCH as usize {
                tokio::time::sleep(POLL).await;
            }
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
