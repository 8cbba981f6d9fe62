//! [`EmailIntake`]: the pipeline side of the SMTP gateway. A message becomes call requests
//! (one per destination), checked by the same [`Validator`] as the HTTP API and stored in one
//! transaction with any attached application; `250` is answered only after that commit, and a
//! refused message stores nothing.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::address::{self, Recipient};
use super::attachments::{self, AttachedApplication};
use super::dkim::Dkim;
use super::fields;
use super::message::{self, HEADER_PREFIX};
use super::replies;
use super::reply::{self, refusal};
use super::settings::{EmailConfig, EmailTenant};
use crate::config::Config;
use crate::dispatch::CallControl;
use crate::fetch::{FetchError, Fetcher};
use crate::intake::{FieldError, Rule, Validator};
use crate::smtp::{Delivery, DeliveryFuture, Envelope, Reply};
use crate::store::{DataStore, IdempotencyKey, NewFiles, Scope, StoreError};

/// Call ids listed in a `250` reply before "and N more".
const IDS_IN_REPLY: usize = 5;

/// Turns e-mail messages into stored calls.
pub struct EmailIntake {
    store: Arc<dyn DataStore>,
    control: Arc<dyn CallControl>,
    /// The configuration the validator's rules come from (each tenant's trunk).
    config: Arc<Config>,
    settings: EmailConfig,
    files_base: String,
    max_document_bytes: usize,
    dkim: Dkim,
    /// Checks application URLs at acceptance; `None` when `email.check_url_timeout_ms = 0`.
    checker: Option<Arc<crate::fetch::TenantFetchers>>,
    /// Whether reply mails are queued (`email.reply_relay` is set).
    replies: bool,
    /// The policy engine's acceptance rules, as for the HTTP API.
    gate: crate::policy_gate::PolicyGate,
    /// Nonces of signed mail seen in the last 5 minutes (see [`crate::signing`]).
    nonces: std::sync::Mutex<crate::signing::NonceCache>,
}

/// What [`EmailIntake::accept`] learned on the way, for the reply mail.
#[derive(Debug, Default)]
struct Seen {
    /// The tenant the recipient named.
    tenant: Option<String>,
    /// The sender proved it is the tenant's (AUTH as it, or an accepted DKIM signature).
    trusted: bool,
    subject: Option<String>,
    message_id: Option<String>,
    auto_submitted: bool,
    /// The calls created: (id, destination); empty when nothing was created.
    calls: Vec<(String, String)>,
    /// The calls are those of an earlier copy of the message.
    replayed: bool,
}

impl std::fmt::Debug for EmailIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailIntake")
            .field("files_base", &self.files_base)
            .finish_non_exhaustive()
    }
}

/// The base URL of `/v1/files/...`: `email.files_base_url`, or this server's HTTP listener.
pub fn files_base(config: &Config) -> String {
    if !config.email.files_base_url.is_empty() {
        return config.email.files_base_url.trim_end_matches('/').to_owned();
    }
    let mut listen = config.http.listen;
    if listen.ip().is_unspecified() {
        listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{listen}")
}

impl EmailIntake {
    /// The intake for the running configuration. `config.http.listen` must be the address
    /// actually bound (it is the default files base).
    pub fn new(
        config: &Config,
        store: Arc<dyn DataStore>,
        control: Arc<dyn CallControl>,
    ) -> Result<Self, String> {
        config.email.validate()?;
        let dkim = Dkim::new(
            config
                .email
                .dkim_keys
                .iter()
                .chain(config.email.dns_txt.iter()),
        )?;
        let checker = match config.email.check_url_timeout_ms {
            0 => None,
            ms => Some(Arc::new(crate::fetch::TenantFetchers::new(
                Fetcher::new(&config.sip.user_agent, Duration::from_millis(ms))
                    .map_err(|e| e.to_string())?,
                crate::egress::EgressPolicy::new(&config.egress),
            ))),
        };
        // Applications a tenant's policy requires are fetched at acceptance even when the
        // reachability check of `email.check_url_timeout_ms` is off.
        let gate_fetchers = match &checker {
            Some(checker) => Arc::clone(checker),
            None => Arc::new(crate::fetch::TenantFetchers::new(
                Fetcher::new(
                    &config.sip.user_agent,
                    Duration::from_millis(config.fetch.timeout_ms),
                )
                .map_err(|e| e.to_string())?,
                crate::egress::EgressPolicy::new(&config.egress),
            )),
        };
        Ok(Self {
            gate: crate::policy_gate::PolicyGate::new(
                Arc::clone(&store),
                config.policy.operator_policy(),
            )
            .with_egress(crate::egress::EgressPolicy::new(&config.egress))
            .with_fetchers(gate_fetchers),
            store,
            control,
            config: Arc::new(config.clone()),
            settings: config.email.clone(),
            files_base: files_base(config),
            max_document_bytes: config.fetch.max_document_bytes,
            dkim,
            checker,
            replies: !config.email.reply_relay.is_empty(),
            nonces: std::sync::Mutex::default(),
        })
    }

    /// When `tenant` requires signed requests, checks `X-Outdial-Signature` over the fields
    /// (`signing::mail_fields`, target `signing::mail_target(recipient)`, method `MAIL`).
    async fn check_signature(
        &self,
        tenant: &str,
        recipient: &str,
        fields: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<(), Reply> {
        let settings = self.store.signing_settings(tenant).await.map_err(|_| {
            refusal(
                451,
                (4, 3, 0),
                "store",
                "the store is unavailable; try again later",
            )
        })?;
        let (true, Some(secret)) = (settings.required, settings.secret) else {
            return Ok(());
        };
        let text = crate::signing::mail_fields(fields);
        let digest = crate::signing::body_sha256(text.as_bytes());
        let target = crate::signing::mail_target(recipient);
        let request = crate::signing::SignedRequest {
            tenant,
            method: "MAIL",
            target: &target,
            signature,
            content_sha256: Some(&digest),
            body: text.as_bytes(),
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let outcome = {
            let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
            crate::signing::check(&mut nonces, &secret, &request, now)
        };
        outcome.map_err(|e| {
            let code = e.code();
            let text = match e {
                crate::signing::SignatureError::Missing => format!(
                    "tenant {tenant:?} requires signed requests: add an X-Outdial-Signature header (docs/security.md)"
                ),
                other => other.to_string(),
            };
            refusal(550, (5, 7, 1), code, &text)
        })
    }

    /// The recipient `address`, if this server takes mail for it from this session.
    async fn recipient(
        &self,
        envelope: &Envelope,
        address: &str,
    ) -> Result<(Recipient, EmailTenant, Option<String>), Reply> {
        let recipient = address::parse(address, &self.settings.domains)?;
        let tenant = self
            .store
            .get_tenant(&recipient.tenant)
            .await
            .map_err(|e| reply::unavailable(&e.to_string()))?;
        let Some(tenant) = tenant.filter(|t| !t.disabled) else {
            return Err(refusal(
                550,
                (5, 1, 1),
                "tenant",
                &format!("no tenant {:?} takes call requests here", recipient.tenant),
            ));
        };
        let rules = self.settings.tenant(&recipient.tenant);
        if rules.require_auth {
            match envelope.authenticated.as_deref() {
                None => {
                    return Err(refusal(
                        530,
                        (5, 7, 0),
                        "auth",
                        &format!(
                            "tenant {:?} requires AUTH: user = the tenant id, password = one of its API keys with calls:create",
                            recipient.tenant
                        ),
                    ));
                }
                Some(who) if who != recipient.tenant => {
                    return Err(refusal(
                        550,
                        (5, 7, 1),
                        "auth",
                        &format!(
                            "this session authenticated as another tenant; it cannot send requests for {:?}",
                            recipient.tenant
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(name) = &recipient.application
            && !rules.applications.contains_key(name)
        {
            return Err(refusal(
                550,
                (5, 1, 1),
                "application",
                &format!(
                    "tenant {:?} has no application named {name:?} (email.tenants.{}.applications)",
                    recipient.tenant, recipient.tenant
                ),
            ));
        }
        if let Some(first) = envelope.rcpt_to.first()
            && !first.eq_ignore_ascii_case(address)
        {
            return Err(refusal(
                452,
                (4, 5, 3),
                "recipients",
                "one Outdial address per message; send to the other address in another message",
            ));
        }
        Ok((recipient, rules, tenant.trunk))
    }

    /// The whole of `deliver`, as a `Result` so every refusal returns early.
    async fn accept(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        seen: &mut Seen,
    ) -> Result<Reply, Reply> {
        let Some(address) = envelope.rcpt_to.first() else {
            return Err(refusal(503, (5, 5, 1), "recipients", "RCPT TO first"));
        };
        // Checked again: the tenant may have been disabled since RCPT.
        let check = Envelope {
            rcpt_to: Vec::new(),
            ..envelope.clone()
        };
        let (recipient, rules, trunk) = self.recipient(&check, address).await?;
        let tenant = recipient.tenant.as_str();
        seen.tenant = Some(tenant.to_owned());
        seen.trusted = envelope.authenticated.as_deref() == Some(tenant);
        let parsed = message::parse(raw)?;
        seen.subject.clone_from(&parsed.subject);
        seen.message_id.clone_from(&parsed.message_id);
        seen.auto_submitted = parsed.auto_submitted;
        if rules.require_dkim {
            let signed: Vec<String> = parsed
                .fields
                .iter()
                .map(|(key, _)| format!("{HEADER_PREFIX}{}", key.to_ascii_lowercase()))
                .collect();
            let domains = self.dkim.signed_by(raw, &signed).await;
            seen.trusted |= domains.iter().any(|d| rules.dkim_domains.contains(d));
            if !domains.iter().any(|d| rules.dkim_domains.contains(d)) {
                return Err(refusal(
                    550,
                    (5, 7, 20),
                    "dkim",
                    &format!(
                        "tenant {tenant:?} accepts mail only with a valid DKIM signature from {} covering the whole body and every X-Outdial- field",
                        rules.dkim_domains.join(", ")
                    ),
                ));
            }
        }
        if rules.require_spf || rules.require_dmarc {
            // Our name for SPF's %{r} macro: the greeting's, else "localhost".
            let host = match self.config.smtp.hostname.as_str() {
                "" => "localhost",
                name => name,
            };
            let checks = self
                .dkim
                .sender_checks(
                    raw,
                    envelope.peer.ip(),
                    &envelope.helo,
                    &envelope.mail_from,
                    host,
                )
                .await;
            let ours = |domain: &str| {
                rules
                    .sender_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
            };
            if rules.require_spf && !(checks.spf_pass && ours(&checks.spf_domain)) {
                return Err(refusal(
                    550,
                    (5, 7, 23),
                    "spf",
                    &format!(
                        "tenant {tenant:?} accepts mail only from a sender at {} that passes SPF for the address it connects from",
                        rules.sender_domains.join(", ")
                    ),
                ));
            }
            if rules.require_dmarc && !(checks.dmarc_pass && ours(&checks.dmarc_domain)) {
                return Err(refusal(
                    550,
                    (5, 7, 1),
                    "dmarc",
                    &format!(
                        "tenant {tenant:?} accepts mail only From: {} passing DMARC (SPF or DKIM aligned with the From: domain)",
                        rules.sender_domains.join(", ")
                    ),
                ));
            }
            seen.trusted = true;
        }
        let mut all = parsed.fields.clone();
        if let Some(body) = &parsed.body {
            all.extend(fields::body_fields(body).map_err(|e| reply::field(&e))?);
        }
        let signature = all
            .iter()
            .position(|(key, _)| key.eq_ignore_ascii_case("signature"))
            .map(|at| all.remove(at).1);
        self.check_signature(tenant, address, &all, signature.as_deref())
            .await?;
        let request = fields::read(&all, self.settings.max_calls_per_message)
            .map_err(|e| reply::field(&e))?;
        if request.destinations.is_empty() {
            return Err(reply::field(&FieldError::new(
                "to",
                Rule::Required,
                "is required: write `Destination: sip:...` or `Destination: +1...` as the first line of the body, or an X-Outdial-Destination header",
            )));
        }
        let mut request = request;
        if request.result_mail {
            request.common.status_callback = Some(self.result_callback(
                envelope,
                request.common.status_callback.as_deref(),
                parsed.subject.as_deref(),
                parsed.message_id.as_deref(),
            )?);
        }
        let attached = attachments::application(parsed.attachments, self.max_document_bytes)
            .map_err(|e| reply::field(&e))?;
        let named = recipient
            .application
            .as_ref()
            .and_then(|n| rules.applications.get(n).cloned());
        let (url, files) = self.choose_application(request.application.clone(), named, attached)?;
        let now = OffsetDateTime::now_utc();
        // The tenant's trunk (read with the tenant above) decides where its numbers go, as
        // for the HTTP API.
        let validator = Validator::for_tenant(&self.config, trunk.as_deref());
        let calls = request
            .calls(&url)
            .into_iter()
            .enumerate()
            .map(|(i, call)| {
                validator.validate(tenant, call, now).map_err(|e| {
                    let mut reply = reply::field(&e);
                    if request.destinations.len() > 1 && e.field == "to" {
                        reply.text =
                            reply::one_line(&format!("{} (destination {})", reply.text, i + 1));
                    }
                    reply
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let destinations: Vec<&str> = calls.iter().map(|c| c.to.as_str()).collect();
        match self.gate.admit(tenant, &destinations).await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => {
                let mut text = format!("{} [{}]", refused.refusal.message, refused.refusal.code);
                if destinations.len() > 1 {
                    text.push_str(&format!(" (destination {})", refused.index + 1));
                }
                return Err(refusal(550, (5, 7, 1), refused.refusal.rule, &text));
            }
            Err(e) => return Err(reply::unavailable(&e.to_string())),
        }
        if files.is_none() {
            match self.gate.check_applications(tenant, &[url.as_str()]).await {
                Ok(checks) => {
                    if let Some(Some(refused)) = checks.into_iter().next() {
                        let text = format!("{} [{}]", refused.message, refused.code);
                        return Err(refusal(550, (5, 7, 1), refused.rule, &text));
                    }
                }
                Err(e) => return Err(reply::unavailable(&e.to_string())),
            }
        }
        // Checked after the rules: a refusal for a wrong field needs no network.
        if files.is_none() {
            self.check_reachable(tenant, &url).await?;
        }
        let idempotency = parsed.message_id.as_ref().map(|id| IdempotencyKey {
            key: format!("email:{}", hex::encode(Sha256::digest(id.as_bytes()))),
            request_sha256: hex::encode(Sha256::digest(raw)),
        });
        let created = self
            .store
            .create_calls_with_files(tenant, calls, files, idempotency, now)
            .await
            .map_err(|e| match e {
                StoreError::IdempotencyConflict(_) => reply::content(
                    "message_id",
                    "this Message-ID was already used for a different message; give each message its own Message-ID",
                ),
                StoreError::NotFound { .. } => refusal(
                    550,
                    (5, 1, 1),
                    "tenant",
                    &format!("no tenant {tenant:?} takes call requests here"),
                ),
                StoreError::Invalid(problem) => reply::content("store", &problem),
                other => reply::unavailable(&other.to_string()),
            })?;
        seen.replayed = created.replayed;
        seen.calls = created
            .records
            .iter()
            .map(|r| (r.id.clone(), r.to.clone()))
            .collect();
        if !created.replayed {
            for record in &created.records {
                self.control.queued(record);
            }
            metrics::counter!("outdial_email_calls_created_total")
                .increment(created.records.len() as u64);
        }
        tracing::info!(
            tenant,
            calls = created.records.len(),
            replayed = created.replayed,
            attached = url.starts_with(&self.files_base),
            "e-mail request accepted"
        );
        let ids: Vec<&str> = created.records.iter().map(|r| r.id.as_str()).collect();
        let mut listed = ids
            .iter()
            .take(IDS_IN_REPLY)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if ids.len() > IDS_IN_REPLY {
            listed.push_str(&format!(" and {} more", ids.len() - IDS_IN_REPLY));
        }
        let what = if created.replayed {
            "already accepted"
        } else {
            "queued"
        };
        let count = ids.len();
        let plural = if count == 1 { "" } else { "s" };
        Ok(Reply::new(
            250,
            (2, 0, 0),
            reply::one_line(&format!("{what} {count} call{plural}: {listed}")),
        ))
    }

    /// Exactly one of: the `Application` field, the application the address names, an
    /// attached VoiceXML document. An attached one gets its files id and URL.
    fn choose_application(
        &self,
        field: Option<String>,
        named: Option<String>,
        attached: Option<AttachedApplication>,
    ) -> Result<(String, Option<NewFiles>), Reply> {
        let given = usize::from(field.is_some())
            + usize::from(named.is_some())
            + usize::from(attached.is_some());
        if given > 1 {
            return Err(reply::content(
                Rule::Duplicate.as_str(),
                "name one application: an Application field, an application+tenant@ address or an attached VoiceXML document, not several",
            ));
        }
        if let Some(app) = attached {
            let id = crate::auth::random_base32(26)
                .map(|tail| format!("fil_{tail}"))
                .map_err(|e| reply::unavailable(&e.to_string()))?;
            let url = format!("{}/v1/files/{id}/{}", self.files_base, app.main);
            return Ok((
                url,
                Some(NewFiles {
                    id,
                    files: app.files,
                }),
            ));
        }
        field.or(named).map(|url| (url, None)).ok_or_else(|| {
            reply::field(&FieldError::new(
                "url",
                Rule::Required,
                "is required: write `Application: https://.../app.vxml`, send to application+tenant@, or attach a .vxml document",
            ))
        })
    }

    /// `Result-Mail: yes`: a `mailto:` status callback to the envelope sender, threaded
    /// under the request, unless the message also names a `Callback` (one or the other).
    fn result_callback(
        &self,
        envelope: &Envelope,
        callback: Option<&str>,
        subject: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<String, Reply> {
        if callback.is_some() {
            return Err(reply::content(
                Rule::Duplicate.as_str(),
                "give Result-Mail: yes or a Callback, not both: the result goes to one place",
            ));
        }
        if envelope.mail_from.is_empty() {
            return Err(reply::field(&FieldError::new(
                "Result-Mail",
                Rule::Required,
                "needs a sender to mail the result to, and this message has the null sender (MAIL FROM:<>)",
            )));
        }
        Ok(crate::webhook::mail::MailCallback::uri(
            &envelope.mail_from,
            subject,
            message_id,
        ))
    }

    /// The application URL answers 2xx within the timeout (and is not too large to run).
    async fn check_reachable(&self, tenant: &str, url: &str) -> Result<(), Reply> {
        let Some(checker) = &self.checker else {
            return Ok(());
        };
        // A URL the validator will refuse is left to it, for its own message.
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Ok(());
        }
        match checker
            .for_tenant(tenant)
            .get(url, self.max_document_bytes)
            .await
        {
            Ok(_) | Err(FetchError::InvalidUrl { .. } | FetchError::UnsupportedScheme { .. }) => {
                Ok(())
            }
            Err(e @ FetchError::Refused { .. }) => Err(refusal(
                550,
                (5, 7, 1),
                "reachable",
                &format!("Application {e}"),
            )),
            Err(
                e @ (FetchError::Status {
                    status: 400..=499, ..
                }
                | FetchError::TooLarge { .. }),
            ) => Err(reply::content("reachable", &format!("Application {e}"))),
            Err(e) => Err(refusal(
                451,
                (4, 4, 1),
                "reachable",
                &format!("Application {e}; try again later"),
            )),
        }
    }
}

impl EmailIntake {
    /// Queues the acknowledgement (calls created) or rejection (to a trusted sender) of a
    /// message; nothing for the null sender, an automaton, or a replayed message.
    async fn queue_reply(&self, envelope: &Envelope, seen: &Seen, outcome: &Result<Reply, Reply>) {
        if envelope.mail_from.is_empty() || seen.auto_submitted || seen.replayed {
            return;
        }
        let subject = seen.subject.as_deref();
        let message_id = seen.message_id.as_deref();
        let reply = match (outcome, seen.tenant.as_deref()) {
            (Ok(_), Some(tenant)) if !seen.calls.is_empty() => {
                let calls: Vec<(&str, &str)> = seen
                    .calls
                    .iter()
                    .map(|(i, t)| (i.as_str(), t.as_str()))
                    .collect();
                replies::acknowledgement(&envelope.mail_from, tenant, subject, message_id, &calls)
            }
            (Err(refused), tenant) if seen.trusted => {
                replies::rejection(&envelope.mail_from, tenant, subject, message_id, refused)
            }
            _ => return,
        };
        if let Err(e) = self
            .store
            .enqueue_reply(reply, OffsetDateTime::now_utc())
            .await
        {
            tracing::warn!(error = %e, "the reply mail could not be queued");
        }
    }
}

/// `AUTH`: user = a tenant id, password = one of its API keys with `calls:create`; the
/// identity is the tenant id. A revoked key or a disabled tenant fails at once.
async fn authenticate(store: &dyn DataStore, user: &str, password: &str) -> Option<String> {
    let principal = store.authenticate(password).await.ok()??;
    let ok = principal.tenant.eq_ignore_ascii_case(user) && principal.has(Scope::CallsCreate);
    ok.then_some(principal.tenant)
}

impl Delivery for EmailIntake {
    fn check_recipient<'a>(
        &'a self,
        envelope: &'a Envelope,
        recipient: &'a str,
    ) -> DeliveryFuture<'a, Result<(), Reply>> {
        Box::pin(async move { self.recipient(envelope, recipient).await.map(|_| ()) })
    }

    fn authenticate<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> DeliveryFuture<'a, Option<String>> {
        Box::pin(authenticate(self.store.as_ref(), user, password))
    }

    fn deliver(&self, envelope: Envelope, message: Vec<u8>) -> DeliveryFuture<'_, Reply> {
        Box::pin(async move {
            let mut seen = Seen::default();
            let outcome = self.accept(&envelope, &message, &mut seen).await;
            if self.replies {
                self.queue_reply(&envelope, &seen, &outcome).await;
            }
            outcome.unwrap_or_else(|refused| {
                // The rule only: the rest of the text may quote a callee's number.
                let rule = refused.text.split(':').next().unwrap_or_default();
                tracing::info!(code = refused.code, rule, "e-mail request refused");
                refused
            })
        })
    }
}
