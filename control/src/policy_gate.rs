//! Where the policy engine meets the store: the two places rules run.
//!
//! - [`PolicyGate::admit`] at acceptance, for every intake (HTTP single and batch, e-mail):
//!   the tenant's policy and the callees' records in two reads, then
//!   [`policy::at_acceptance`] for each destination. A refusal answers the request.
//! - [`PolicyGate::release`] when the scheduler releases calls: one read for the whole batch,
//!   [`policy::at_dispatch`] for each call; a deferred call goes back to the queue with its
//!   new due time and the rule in its history, a refused one ends `refused`.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::policy::{self, Decision, OperatorPolicy, Refusal};
use crate::scheduler::PendingCall;
use crate::store::{DataStore, PolicyNote, StoreError};

/// The operator's rules and the store that holds the others.
#[derive(Clone)]
pub struct PolicyGate {
    store: Arc<dyn DataStore>,
    operator: Arc<OperatorPolicy>,
    egress: Arc<crate::egress::EgressPolicy>,
    /// Fetches applications for `require_application`, with each tenant's egress rules.
    fetchers: Option<Arc<crate::fetch::TenantFetchers>>,
    /// Locates `sip:` destinations as the runner will (RFC 3263); `None` = A/AAAA through
    /// the system resolver.
    sip_dns: Option<Arc<crate::sip_dns::SipDns>>,
    /// Recent application checks: (rules' key, URL) → when, and the refusal if any.
    checked: Arc<std::sync::Mutex<Checks>>,
    /// Tenants' policies as read in the last [`POLICY_TTL`], so a create costs no extra read.
    policies: Arc<
        std::sync::Mutex<
            std::collections::HashMap<String, (std::time::Instant, policy::RequesterPolicy)>,
        >,
    >,
}

/// How long a tenant's policy read from the store is used without reading it again. A change
/// through this server's API applies at once ([`PolicyGate::forget`]); one written to the
/// store by another process (`outdial policy set`, another control node) within this time.
pub const POLICY_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Recent application checks: (rules' key, URL) → when, and the refusal if any.
type Checks = std::collections::HashMap<(String, String), (std::time::Instant, Option<Refusal>)>;

/// How long an application check is trusted.
const CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most application checks remembered (the memory is cleared when full).
const MAX_CHECKED: usize = 10_000;
/// How long fetching an application at acceptance may take.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl std::fmt::Debug for PolicyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyGate").finish_non_exhaustive()
    }
}

/// A destination refused at acceptance: which one (its index in the request) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Index of the refused destination among those given.
    pub index: usize,
    /// The rule that refused it.
    pub refusal: Refusal,
}

/// What [`PolicyGate::release`] leaves to place, and what it put back.
#[derive(Debug, Default)]
pub struct Gated {
    /// Calls every rule allows now.
    pub go: Vec<PendingCall>,
    /// Calls held until later, with their new due time, for the queue.
    pub deferred: Vec<PendingCall>,
    /// Calls refused (ended `refused`) or no longer queued: their slots are free.
    pub dropped: Vec<PendingCall>,
}

impl PolicyGate {
    /// A gate applying `operator`'s rules with the records in `store`.
    pub fn new(store: Arc<dyn DataStore>, operator: OperatorPolicy) -> Self {
        Self {
            store,
            operator: Arc::new(operator),
            egress: Arc::new(crate::egress::EgressPolicy::unrestricted()),
            fetchers: None,
            sip_dns: None,
            checked: Arc::default(),
            policies: Arc::default(),
        }
    }

    /// Checks a `sip:` destination's host at every address RFC 3263 gives for it (its SRV
    /// targets too), the addresses the runner will dial.
    pub fn with_sip_dns(mut self, dns: Arc<crate::sip_dns::SipDns>) -> Self {
        self.sip_dns = Some(dns);
        self
    }

    /// `tenant`'s policy changed: read it again next time.
    pub fn forget(&self, tenant: &str) {
        self.policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tenant);
    }

    /// `tenant`'s policy, from the last [`POLICY_TTL`] or the store.
    async fn requester(&self, tenant: &str) -> Result<policy::RequesterPolicy, StoreError> {
        {
            let policies = self
                .policies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, policy)) = policies.get(tenant)
                && at.elapsed() < POLICY_TTL
            {
                return Ok(policy.clone());
            }
        }
        let read = self.store.tenant_policy(tenant).await?;
        let mut policies = self
            .policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if policies.len() >= MAX_CHECKED {
            policies.clear();
        }
        policies.insert(tenant.to_owned(), (std::time::Instant::now(), read.clone()));
        Ok(read)
    }

    /// The same gate, fetching applications with `fetchers` when a tenant's policy sets
    /// `require_application`.
    pub fn with_fetchers(mut self, fetchers: Arc<crate::fetch::TenantFetchers>) -> Self {
        self.fetchers = Some(fetchers);
        self
    }

    /// For a tenant whose policy sets `require_application`: whether each of `urls` answers
    /// with a well-formed VoiceXML document (fetched with the tenant's outbound rules, within
    /// 3 s; a result is kept for 60 s). `None` where it does, or when the policy does not ask.
    pub async fn check_applications(
        &self,
        tenant: &str,
        urls: &[&str],
    ) -> Result<Vec<Option<Refusal>>, StoreError> {
        let requester = self.requester(tenant).await?;
        if !requester.require_application {
            return Ok(vec![None; urls.len()]);
        }
        let mut out = Vec::with_capacity(urls.len());
        for url in urls {
            let refusal = self
                .check_application(tenant, url, requester.require_audio)
                .await;
            if let Some(refusal) = &refusal {
                count("acceptance", "refuse", refusal);
            }
            out.push(refusal);
        }
        Ok(out)
    }

    async fn check_application(&self, tenant: &str, url: &str, audio: bool) -> Option<Refusal> {
        let refuse = |problem: String| {
            Some(Refusal::new(
                "application_unavailable",
                policy::Owner::Requester,
                "requester.require_application",
                format!("the application {problem}; the tenant's policy requires it at acceptance"),
            ))
        };
        let Some(fetchers) = &self.fetchers else {
            return refuse("cannot be checked on this server".to_owned());
        };
        let (fetcher, scope) = fetchers.for_tenant_scoped(tenant);
        let key = (
            format!("{scope}{}", if audio { "+audio" } else { "" }),
            url.to_owned(),
        );
        if let Some((at, result)) = self.lock_checked().get(&key)
            && at.elapsed() < CHECK_TTL
        {
            return result.clone();
        }
        let max = fetcher.limits().max_bytes;
        let result = match fetcher.get_within(url, max, Some(CHECK_TIMEOUT)).await {
            Err(e) => refuse(format!("could not be fetched: {e}")),
            Ok(fetched) => {
                let parsed = url::Url::parse(&fetched.url).ok().map(|final_url| {
                    outdial_vxml::document::Document::parse(
                        final_url,
                        fetched.content_type.as_deref(),
                        &fetched.body,
                        max,
                    )
                });
                match parsed {
                    Some(Ok(_)) if audio => check_audio(&fetcher, &fetched).await.and_then(refuse),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => refuse(format!(
                        "at {url} is not a well-formed VoiceXML document: {e}"
                    )),
                    None => refuse(format!("answered from an unusable URL {}", fetched.url)),
                }
            }
        };
        let mut checked = self.lock_checked();
        if checked.len() >= MAX_CHECKED {
            checked.clear();
        }
        checked.insert(key, (std::time::Instant::now(), result.clone()));
        result
    }

    fn lock_checked(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The same gate, also refusing `sip:` destinations whose host the tenant's
    /// outbound-connection rules refuse (an address, or a name resolving to one).
    pub fn with_egress(mut self, egress: crate::egress::EgressPolicy) -> Self {
        self.egress = Arc::new(egress);
        self
    }

    /// The operator's rules.
    pub fn operator(&self) -> &OperatorPolicy {
        &self.operator
    }

    /// The static rules for `tenant`'s request to each of `destinations` (`to` as written):
    /// the refusal of each destination, `None` where it is accepted.
    pub async fn decide(
        &self,
        tenant: &str,
        destinations: &[&str],
    ) -> Result<Vec<Option<Refusal>>, StoreError> {
        let requester = self.requester(tenant).await?;
        let numbers = destinations.iter().map(|d| (*d).to_owned()).collect();
        let callees = self.store.callees(numbers).await?;
        let rules = self.egress.for_tenant(tenant);
        let mut decisions = Vec::with_capacity(destinations.len());
        for to in destinations {
            let decision =
                policy::at_acceptance(tenant, to, &requester, callees.get(*to), &self.operator);
            let mut refusal = match decision {
                Decision::Refuse(refusal) => Some(refusal),
                _ => None,
            };
            if refusal.is_none() && !rules.is_unrestricted() {
                refusal = sip_destination_refused(&rules, self.sip_dns.as_deref(), to).await;
            }
            if let Some(refusal) = &refusal {
                count("acceptance", "refuse", refusal);
            }
            decisions.push(refusal);
        }
        Ok(decisions)
    }

    /// Like [`Self::decide`], stopping at the first refusal.
    pub async fn admit(
        &self,
        tenant: &str,
        destinations: &[&str],
    ) -> Result<Result<(), Refused>, StoreError> {
        let decisions = self.decide(tenant, destinations).await?;
        Ok(
            match decisions
                .into_iter()
                .enumerate()
                .find_map(|(i, d)| d.map(|r| (i, r)))
            {
                Some((index, refusal)) => Err(Refused { index, refusal }),
                None => Ok(()),
            },
        )
    }

    /// Applies the dispatch rules to `calls` released at `now`. A store failure lets the
    /// calls go as the scheduler released them would be wrong (a quiet hour broken), so they
    /// wait a second and are tried again.
    pub async fn release(&self, calls: Vec<PendingCall>, now: OffsetDateTime) -> Gated {
        let mut gated = Gated::default();
        if calls.is_empty() {
            return gated;
        }
        let mut tenants: Vec<String> = calls.iter().map(|c| c.tenant.to_string()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let numbers = calls.iter().map(|c| c.to.to_string()).collect();
        let facts = match self.store.dispatch_facts(tenants, numbers, now).await {
            Ok(facts) => facts,
            Err(e) => {
                tracing::error!(error = %e, calls = calls.len(), "cannot read policies; the calls wait");
                for mut call in calls {
                    call.due_at = crate::store::unix_micros(now) + 1_000_000;
                    gated.deferred.push(call);
                }
                return gated;
            }
        };
        let default_policy = policy::RequesterPolicy::default();
        for call in calls {
            let requester = facts.policies.get(&*call.tenant).unwrap_or(&default_policy);
            let (record, history) = facts
                .callees
                .get(&*call.to)
                .map_or_else(|| (None, Default::default()), |(r, h)| (Some(r), *h));
            let decision = policy::at_dispatch(
                &call.tenant,
                &call.to,
                requester,
                record,
                history,
                &self.operator,
                now,
            );
            match decision {
                Decision::Accept => gated.go.push(call),
                Decision::Defer { until, reason } => {
                    count("dispatch", "defer", &reason);
                    match self
                        .store
                        .defer_call(&call.id, until, PolicyNote::from(&reason), now)
                        .await
                    {
                        Ok(Some(_)) => {
                            tracing::info!(call = %call.id, owner = reason.owner.as_str(), rule = reason.rule, until = %until, "call deferred by policy");
                            let mut later = call;
                            later.due_at = crate::store::unix_micros(until);
                            gated.deferred.push(later);
                        }
                        Ok(None) => gated.dropped.push(call),
                        Err(e) => {
                            tracing::error!(call = %call.id, error = %e, "cannot defer the call; it waits");
                            let mut later = call;
                            later.due_at = crate::store::unix_micros(now) + 1_000_000;
                            gated.deferred.push(later);
                        }
                    }
                }
                Decision::Refuse(reason) => {
                    count("dispatch", "refuse", &reason);
                    match self
                        .store
                        .refuse_call(&call.id, PolicyNote::from(&reason), now)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(call = %call.id, owner = reason.owner.as_str(), rule = reason.rule, "call refused by policy");
                            gated.dropped.push(call);
                        }
                        Err(e) => {
                            tracing::error!(call = %call.id, error = %e, "cannot refuse the call; it waits");
                            let mut later = call;
                            later.due_at = crate::store::unix_micros(now) + 1_000_000;
                            gated.deferred.push(later);
                        }
                    }
                }
            }
        }
        gated
    }
}

/// Most audio files of one document checked.
const MAX_AUDIO_CHECKED: usize = 20;

/// The audio files `document` names statically (`<audio src>`, resolved against its URL),
/// each fetched: `Some(problem)` for the first that does not answer with WAV audio.
async fn check_audio(
    fetcher: &crate::fetch::Fetcher,
    document: &crate::fetch::Fetched,
) -> Option<String> {
    let text = String::from_utf8_lossy(&document.body);
    let base = url::Url::parse(&document.url).ok()?;
    let sources: Vec<String> = {
        // The document already passed the interpreter's parser and its entity limits.
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let tree = match roxmltree::Document::parse_with_options(&text, options) {
            Ok(tree) => tree,
            Err(e) => return Some(format!("cannot be read for the audio it names: {e}")),
        };
        tree.descendants()
            .filter(|n| n.tag_name().name() == "audio")
            .filter_map(|n| n.attribute("src"))
            .filter_map(|src| base.join(src).ok())
            .map(String::from)
            .take(MAX_AUDIO_CHECKED)
            .collect()
    };
    for source in sources {
        let fetched = fetcher
            .get_within(&source, fetcher.limits().max_bytes, Some(CHECK_TIMEOUT))
            .await;
        match fetched {
            Ok(audio)
                if audio.body.starts_with(b"RIFF") && audio.body.get(8..12) == Some(b"WAVE") => {}
            Ok(_) => return Some(format!("names audio {source} that is not a WAV file")),
            Err(e) => return Some(format!("names audio that cannot be fetched: {e}")),
        }
    }
    None
}

/// How long resolving a `sip:` destination's host may take at acceptance.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the host of a `sip:` destination (`to` as written; E.164 numbers go through the
/// operator's trunk and are not checked) is one the tenant may not reach: an address, or a
/// name any of whose addresses (with `dns`, every address RFC 3263 gives) is refused. A name
/// that does not resolve now is left to the dial, which fails on it.
async fn sip_destination_refused(
    rules: &crate::egress::TenantEgress,
    dns: Option<&crate::sip_dns::SipDns>,
    to: &str,
) -> Option<Refusal> {
    use outdial_dataplane::sip::message::Host;
    let uri = outdial_dataplane::sip::target::dial_target(to).ok()?;
    let addresses: Vec<std::net::IpAddr> = match uri.host {
        Host::Ipv4(ip) => vec![ip.into()],
        Host::Ipv6(text) => vec![text.parse::<std::net::Ipv6Addr>().ok()?.into()],
        Host::Name(name) => {
            if let Some(dns) = dns {
                return match tokio::time::timeout(RESOLVE_TIMEOUT, dns.locate(name, uri.port)).await
                {
                    Ok(Ok(found)) => first_refused(rules, found.iter().map(|a| a.ip())),
                    _ => None,
                };
            }
            let port = uri.port.unwrap_or(5060);
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                _ => return None,
            }
        }
    };
    first_refused(rules, addresses.into_iter())
}

/// The refusal of the first of `addresses` that `rules` refuse.
fn first_refused(
    rules: &crate::egress::TenantEgress,
    mut addresses: impl Iterator<Item = std::net::IpAddr>,
) -> Option<Refusal> {
    addresses.find_map(|ip| {
        rules.check(ip).err().map(|e| {
            Refusal::new(
                "destination_forbidden",
                policy::Owner::Operator,
                e.rule,
                format!("`to` {e}"),
            )
        })
    })
}

/// `outdial_policy_decisions_total{stage, decision, owner, rule}`: calls held or refused.
fn count(stage: &'static str, decision: &'static str, reason: &Refusal) {
    metrics::counter!(
        "outdial_policy_decisions_total",
        "stage" => stage,
        "decision" => decision,
        "owner" => reason.owner.as_str(),
        "rule" => reason.rule
    )
    .increment(1);
}
