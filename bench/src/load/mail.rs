//! `bench load --smtp`: call requests by e-mail instead of `POST /v1/calls`. Each call is one
//! message to `TENANT@outdial` whose body carries the same request as the JSON body would
//! (`Destination`, `Application`, `Callback`, `Var-*`), sent over a pool of authenticated SMTP
//! sessions; the call id comes back in the gateway's `250` reply. Everything after (the
//! callee, the submits, the checks) is the same as for HTTP.

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::smtp::connect;

/// Where requests are mailed, and the idle sessions.
pub(super) struct MailIntake {
    server: String,
    credentials: Credentials,
    envelope: Envelope,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

impl MailIntake {
    /// Mails to `tenant@outdial` at `server`, AUTH as the tenant with `key`.
    pub(super) fn new(server: &str, tenant: &str, key: &str) -> Result<Self, String> {
        let parse = |a: &str| {
            a.parse()
                .map_err(|e| format!("address {a} is not valid: {e}"))
        };
        let envelope = Envelope::new(
            Some(parse("bench-load@bench.outdial.invalid")?),
            vec![parse(&format!("{tenant}@outdial.invalid"))?],
        )
        .map_err(|e| format!("envelope: {e}"))?;
        Ok(Self {
            server: server.to_owned(),
            credentials: Credentials::new(tenant.to_owned(), key.to_owned()),
            envelope,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one message per request body; the call ids, in order.
    pub(super) async fn create(&self, bodies: Vec<Value>) -> Result<Vec<String>, String> {
        let mut ids = Vec::with_capacity(bodies.len());
        for body in bodies {
            ids.push(self.send(&body).await?);
        }
        Ok(ids)
    }

    async fn send(&self, body: &Value) -> Result<String, String> {
        let pooled = self.idle.lock().await.pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => connect(&self.server, &self.credentials).await?,
        };
        let message = message(body);
        let response = connection
            .send(&self.envelope, message.as_bytes())
            .await
            .map_err(|e| format!("SMTP to {}: {e}", self.server))?;
        self.idle.lock().await.push(connection);
        let text = response.message().collect::<Vec<_>>().join(" ");
        if !response.is_positive() {
            return Err(format!("e-mail refused: {} {text}", response.code()));
        }
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|word| word.starts_with("call_"))
            .map(str::to_owned)
            .ok_or_else(|| format!("e-mail accepted without a call id: {text}"))
    }
}

/// The request `body` (a `POST /v1/calls` JSON body) as a message whose body lines are its
/// fields (`docs/email.md`).
fn message(body: &Value) -> String {
    let text = |name: &str| body[name].as_str().unwrap_or_default();
    let mut fields = format!(
        "Destination: {}\r\nApplication: {}\r\n",
        text("to"),
        text("url")
    );
    if let Some(callback) = body["status_callback"].as_str() {
        fields.push_str(&format!("Callback: {callback}\r\n"));
    }
    if let Some(events) = body["status_callback_events"].as_array() {
        let names: Vec<&str> = events.iter().filter_map(Value::as_str).collect();
        fields.push_str(&format!("Callback-Events: {}\r\n", names.join(", ")));
    }
    if let Some(vars) = body["vars"].as_object() {
        for (name, value) in vars {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            fields.push_str(&format!("Var-{name}: {value}\r\n"));
        }
    }
    let unique = body["vars"]["bench_call"].as_str().unwrap_or("call");
    format!(
        "From: <bench-load@bench.outdial.invalid>\r\nSubject: bench load\r\n\
         Message-ID: <{unique}@bench.outdial.invalid>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{fields}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_body_becomes_the_fields_of_a_message() {
        let text = message(&json!({
            "to": "sip:press-12@127.0.0.1:5090",
            "url": "http://127.0.0.1:4000/app.vxml",
            "vars": { "bench_call": "run-7" },
            "status_callback": "http://127.0.0.1:4000/status",
        }));
        assert!(
            text.contains("Message-ID: <run-7@bench.outdial.invalid>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\n\r\nDestination: sip:press-12@127.0.0.1:5090\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Application: http://127.0.0.1:4000/app.vxml\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Callback: http://127.0.0.1:4000/status\r\n"),
            "{text}"
        );
        assert!(text.contains("Var-bench_call: run-7\r\n"), "{text}");
    }
}
