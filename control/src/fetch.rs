//! HTTP fetching for VoiceXML documents, audio files and `<submit>`s.
//!
//! One [`Fetcher`] wraps one `reqwest::Client`, so every call runner shares its connection
//! pool. Each fetch is bounded three ways: a total timeout (connect, headers and body; a
//! fetch may ask for a shorter or longer one, VoiceXML `fetchtimeout`), a body size limit
//! enforced while streaming (the body is never read past the limit), and a redirect limit.
//! Only `http` and `https` URLs are fetched (VoiceXML 2.1 §5.1 leaves the scheme set to the
//! platform).
//!
//! [`Fetcher::get_cached`] goes through an HTTP cache shared by every clone, hence by every
//! call (VoiceXML 2.0 §6.1.2; RFC 9111). Only `GET` 200 responses are stored, and not those
//! marked `no-store` or `private` (the cache serves every tenant). A response's freshness
//! lifetime is its `max-age`, else `Expires` minus `Date`; with neither it is zero (no
//! heuristic freshness), so it is revalidated on every use. A stored response is used as it
//! is when its age is within the fetch's `maxage` and within its freshness lifetime plus the
//! fetch's `maxstale`, and it is not `no-cache`; otherwise it is revalidated with
//! `If-None-Match` / `If-Modified-Since` when it has an `ETag` / `Last-Modified` (a 304
//! refreshes it), or fetched again. The cache is bounded in bytes and entries, evicting the
//! least recently used. `Vary` is not consulted: every request this fetcher makes carries
//! the same headers.
//!
//! [`Fetcher::post_multipart`] sends `multipart/form-data` (RFC 7578), how `<submit>` sends
//! recordings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{
    AGE, CACHE_CONTROL, CONTENT_TYPE, DATE, ETAG, EXPIRES, HeaderMap, HeaderValue,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::{Client, Response, StatusCode, redirect};
use url::Url;

/// Bounds applied to every fetch made by one [`Fetcher`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct FetchLimits {
    /// Total time for one fetch: connecting, sending, and reading the whole body.
    pub timeout: Duration,
    /// Ceiling on any body this fetcher reads; each call may ask for less.
    pub max_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
}

impl FetchLimits {
    /// Redirects followed by default (the HTTP/1.1 advice of RFC 2068 §10.3 was five).
    pub const DEFAULT_MAX_REDIRECTS: usize = 5;

    /// Limits with the given timeout, no ceiling beyond each call's own, and five redirects.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            max_bytes: usize::MAX,
            max_redirects: Self::DEFAULT_MAX_REDIRECTS,
        }
    }
}

/// A successful (2xx) response, read in full.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Fetched {
    /// The URL the body came from, after following redirects.
    pub url: String,
    /// The HTTP status code (always 2xx).
    pub status: u16,
    /// The `Content-Type` header, when present and readable.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a fetch failed. Every message names the URL and what to change.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be built (TLS set-up, or a bad user agent).
    #[error("cannot build the HTTP client: {reason}; check the configured user agent")]
    Client {
        /// What went wrong.
        reason: String,
    },
    /// The URL does not parse.
    #[error("invalid URL `{url}`: {reason}; use an absolute http:// or https:// URL")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The URL's scheme is not `http` or `https`.
    #[error("cannot fetch `{url}`: scheme `{scheme}` is not supported; use http:// or https://")]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// No connection could be made (refused, unreachable, DNS failure, TLS handshake).
    #[error("cannot connect to `{url}`: {reason}; check that the server is running and reachable")]
    Connect {
        /// The URL being fetched.
        url: String,
        /// The underlying cause.
        reason: String,
    },
    /// The fetch took longer than the timeout.
    #[error(
        "fetching `{url}` took longer than {after:?}; make the server answer faster or raise the fetch timeout"
    )]
    Timeout {
        /// The URL being fetched.
        url: String,
        /// The timeout that passed.
        after: Duration,
    },
    /// The outbound-connection policy refuses the destination (`rule` names which).
    #[error("fetching `{url}` refused: {reason}")]
    Refused {
        /// The URL being fetched.
        url: String,
        /// The rule (`egress.loopback`, ...).
        rule: &'static str,
        /// In words.
        reason: String,
    },
    /// The server redirected more times than allowed.
    #[error(
        "fetching `{url}` was redirected more than {max} times; fix the redirect loop on the server"
    )]
    TooManyRedirects {
        /// The URL first asked for.
        url: String,
        /// The redirect limit.
        max: usize,
    },
    /// The server answered with a status other than 2xx.
    #[error("fetching `{url}` returned HTTP {status}; check the URL and the server's logs")]
    Status {
        /// The URL that answered (after redirects).
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than allowed.
    #[error(
        "the body of `{url}` is larger than {limit} bytes; serve a smaller resource or raise the limit"
    )]
    TooLarge {
        /// The URL that answered (after redirects).
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The connection failed after it was made (reset, bad chunked encoding, ...).
    #[error("fetching `{url}` failed: {reason}; check the server")]
    Transport {
        /// The URL being fetched.
        url: String,
        /// The underlying cause.
        reason: String,
    },
}

/// How one cached fetch may use a stored response (VoiceXML `maxage` / `maxstale`, the
/// request directives of RFC 9111 §5.2.1.1 and §5.2.1.2), and how long it may take.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FetchOptions {
    /// Total time for this fetch instead of the fetcher's (`fetchtimeout`).
    pub timeout: Option<Duration>,
    /// A stored response older than this is not used without revalidation.
    pub maxage: Option<Duration>,
    /// A stored response stale by up to this long may still be used.
    pub maxstale: Option<Duration>,
}

/// One file of a `multipart/form-data` body.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FilePart<'a> {
    /// Form field name.
    pub name: &'a str,
    /// File name sent with it.
    pub filename: &'a str,
    /// Its media type, e.g. `audio/wav`.
    pub content_type: &'a str,
    /// Its bytes.
    pub data: &'a [u8],
}

/// One [`Fetcher`] per set of outbound-connection rules (see [`crate::egress`]): the call
/// runner fetches a call's documents, data, submits and audio with its tenant's.
pub struct TenantFetchers {
    base: Fetcher,
    scoped: crate::egress::Scoped<Fetcher>,
}

impl std::fmt::Debug for TenantFetchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantFetchers").finish_non_exhaustive()
    }
}

impl TenantFetchers {
    /// Fetchers like `base` keeping to `policy`.
    pub fn new(base: Fetcher, policy: crate::egress::EgressPolicy) -> Self {
        let template = base.clone();
        let scoped = crate::egress::Scoped::new(policy, move |rules| {
            if rules.is_unrestricted() {
                return template.clone();
            }
            template.restricted_to(rules).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot build a restricted HTTP client; this tenant's fetches are refused");
                let mut closed = template.clone();
                closed.egress = Arc::new(crate::egress::TenantEgress::deny_all());
                closed
            })
        });
        Self { base, scoped }
    }

    /// Fetchers that restrict nothing (tools, tests).
    pub fn unrestricted(base: Fetcher) -> Self {
        Self::new(base, crate::egress::EgressPolicy::unrestricted())
    }

    /// The fetcher for `tenant`'s calls.
    pub fn for_tenant(&self, tenant: &str) -> Fetcher {
        self.scoped.for_tenant(tenant).0
    }

    /// The fetcher for `tenant`'s calls and the key of its rules (for caches kept per rules).
    pub fn for_tenant_scoped(&self, tenant: &str) -> (Fetcher, String) {
        (self.scoped.for_tenant(tenant).0, self.scoped.key(tenant))
    }

    /// The unrestricted fetcher (for the operator's own fetches).
    pub fn base(&self) -> &Fetcher {
        &self.base
    }
}

/// Fetches resources over HTTP(S). Cheap to clone: clones share one connection pool and
/// one HTTP cache.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: Client,
    limits: FetchLimits,
    cache: Arc<Mutex<HttpCache>>,
    user_agent: String,
    /// The outbound-connection rules this fetcher keeps to (see [`crate::egress`]).
    egress: Arc<crate::egress::TenantEgress>,
}

impl Fetcher {
    /// A fetcher with the given user agent and total timeout, following up to five redirects.
    pub fn new(user_agent: &str, timeout: Duration) -> Result<Self, FetchError> {
        Self::with_limits(user_agent, FetchLimits::with_timeout(timeout))
    }

    /// A fetcher with explicit limits.
    pub fn with_limits(user_agent: &str, limits: FetchLimits) -> Result<Self, FetchError> {
        let client = Client::builder()
            .user_agent(user_agent)
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout)
            .redirect(redirect::Policy::limited(limits.max_redirects))
            .build()
            .map_err(|e| FetchError::Client {
                reason: root_cause(&e),
            })?;
        Ok(Self {
            client,
            limits,
            cache: Arc::new(Mutex::new(HttpCache::new(
                DEFAULT_CACHE_BYTES,
                DEFAULT_CACHE_ENTRIES,
            ))),
            user_agent: user_agent.to_owned(),
            egress: Arc::new(crate::egress::TenantEgress::unrestricted()),
        })
    }

    /// A fetcher like this one that keeps to `rules`: names resolve only to allowed
    /// addresses, address literals and redirects are checked. It has its own connection pool
    /// and its own cache of the same size, so nothing fetched under other rules is served
    /// from it.
    pub fn restricted_to(
        &self,
        rules: Arc<crate::egress::TenantEgress>,
    ) -> Result<Self, FetchError> {
        let builder = Client::builder()
            .user_agent(&self.user_agent)
            .timeout(self.limits.timeout)
            .connect_timeout(self.limits.timeout)
            .redirect(crate::egress::redirect_policy(
                Arc::clone(&rules),
                self.limits.max_redirects,
            ));
        let client = crate::egress::restrict(builder, &rules)
            .build()
            .map_err(|e| FetchError::Client {
                reason: root_cause(&e),
            })?;
        let (bytes, entries) = {
            let cache = self.cache();
            (cache.max_bytes, cache.max_entries)
        };
        Ok(Self {
            client,
            limits: self.limits.clone(),
            cache: Arc::new(Mutex::new(HttpCache::new(bytes, entries))),
            user_agent: self.user_agent.clone(),
            egress: rules,
        })
    }

    /// The URL to fetch, if it is http(s) and its host, when an address, is allowed.
    fn target(&self, url: &str) -> Result<Url, FetchError> {
        let target = checked_url(url)?;
        crate::egress::check_url(&self.egress, &target).map_err(|refusal| FetchError::Refused {
            url: url.to_owned(),
            rule: refusal.rule,
            reason: refusal.to_string(),
        })?;
        Ok(target)
    }

    /// This fetcher with a fresh shared cache of at most `bytes` of bodies in at most
    /// `entries` responses (0 disables caching).
    pub fn with_cache(mut self, bytes: usize, entries: usize) -> Self {
        self.cache = Arc::new(Mutex::new(HttpCache::new(bytes, entries)));
        self
    }

    /// The outbound-connection rules it keeps to (also what SIP redirects are checked by).
    pub fn egress(&self) -> &crate::egress::TenantEgress {
        &self.egress
    }

    /// The limits this fetcher applies.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// `GET url`, reading at most `max_bytes` of body.
    pub async fn get(&self, url: &str, max_bytes: usize) -> Result<Fetched, FetchError> {
        self.get_within(url, max_bytes, None).await
    }

    /// Like [`Fetcher::get`], taking `timeout` instead of the fetcher's when given.
    pub async fn get_within(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let target = self.target(url)?;
        let request = self.client.get(target);
        self.send(url, request, max_bytes, timeout)
            .await
            .map(|(fetched, _)| fetched)
    }

    /// `GET url` through the shared HTTP cache (see the module docs), reading at most
    /// `max_bytes` of body.
    pub async fn get_cached(
        &self,
        url: &str,
        max_bytes: usize,
        options: FetchOptions,
    ) -> Result<Fetched, FetchError> {
        let target = self.target(url)?;
        let key = target.as_str().to_owned();
        let now = Instant::now();
        let stored = self.cache().lookup(&key);
        let mut request = self.client.get(target);
        let mut revalidating = None;
        if let Some(entry) = stored {
            if entry.usable(now, options) && entry.body.len() <= max_bytes {
                return Ok(entry.fetched());
            }
            if entry.etag.is_some() || entry.last_modified.is_some() {
                if let Some(etag) = &entry.etag {
                    request = request.header(IF_NONE_MATCH, etag.as_str());
                }
                if let Some(modified) = &entry.last_modified {
                    request = request.header(IF_MODIFIED_SINCE, modified.as_str());
                }
                revalidating = Some(entry);
            }
        }
        let (fetched, headers) = self
            .send_accepting_304(
                url,
                request,
                max_bytes,
                options.timeout,
                revalidating.is_some(),
            )
            .await?;
        if fetched.status == 304
            && let Some(entry) = revalidating
        {
            let refreshed = entry.refreshed(&headers, Instant::now());
            let fetched = refreshed.fetched();
            if fetched.body.len() > max_bytes {
                return Err(FetchError::TooLarge {
                    url: fetched.url,
                    limit: max_bytes,
                });
            }
            self.cache().store(key, refreshed);
            return Ok(fetched);
        }
        if fetched.url == key
            && fetched.status == 200
            && let Some(entry) = CacheEntry::from_response(&fetched, &headers, Instant::now())
        {
            self.cache().store(key, entry);
        }
        Ok(fetched)
    }

    /// `POST url` with `form` as an `application/x-www-form-urlencoded` body
    /// (HTML 4.01 §17.13.4, as VoiceXML `<submit method="post">` sends it), reading at most
    /// `max_bytes` of the response body.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        self.post_form_within(url, form, max_bytes, None).await
    }

    /// Like [`Fetcher::post_form`], taking `timeout` instead of the fetcher's when given.
    pub async fn post_form_within(
        &self,
        url: &str,
        form: &[(String, String)],
        max_bytes: usize,
        timeout: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let target = self.target(url)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .client
            .post(target)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body);
        self.send(url, request, max_bytes, timeout)
            .await
            .map(|(fetched, _)| fetched)
    }

    /// `POST url` with `form` and `files` as a `multipart/form-data` body (RFC 7578; how
    /// VoiceXML `<submit enctype="multipart/form-data">` sends recordings), reading at most
    /// `max_bytes` of the response body, within `timeout` when given.
    pub async fn post_multipart(
        &self,
        url: &str,
        form: &[(String, String)],
        files: &[FilePart<'_>],
        max_bytes: usize,
        timeout: Option<Duration>,
    ) -> Result<Fetched, FetchError> {
        let target = self.target(url)?;
        let (content_type, body) = multipart_body(form, files, &mut boundary_source());
        let request = self
            .client
            .post(target)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(url, request, max_bytes, timeout)
            .await
            .map(|(fetched, _)| fetched)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HttpCache> {
        // A panic while the lock was held cannot leave the map inconsistent in a way that
        // matters more than losing the cache: keep using it.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        max_bytes: usize,
        timeout: Option<Duration>,
    ) -> Result<(Fetched, HeaderMap), FetchError> {
        self.send_accepting_304(url, request, max_bytes, timeout, false)
            .await
    }

    /// Sends `request`; a 2xx (or a 304 when `not_modified_ok`, with an empty body) is read
    /// in full and returned with its headers.
    async fn send_accepting_304(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        max_bytes: usize,
        timeout: Option<Duration>,
        not_modified_ok: bool,
    ) -> Result<(Fetched, HeaderMap), FetchError> {
        let limit = max_bytes.min(self.limits.max_bytes);
        let after = timeout.unwrap_or(self.limits.timeout);
        let request = match timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| self.classify(url, &e, after))?;
        let final_url = response.url().to_string();
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::NOT_MODIFIED && not_modified_ok {
            return Ok((
                Fetched {
                    url: final_url,
                    status: status.as_u16(),
                    content_type: None,
                    body: Vec::new(),
                },
                headers,
            ));
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: final_url,
                status: status.as_u16(),
            });
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = self
            .read_body(&mut response, &final_url, limit, after)
            .await?;
        Ok((
            Fetched {
                url: final_url,
                status: status.as_u16(),
                content_type,
                body,
            },
            headers,
        ))
    }

    /// Streams the body chunk by chunk, stopping as soon as it would pass `limit`.
    async fn read_body(
        &self,
        response: &mut Response,
        url: &str,
        limit: usize,
        after: Duration,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
            limit,
        };
        let declared = response.content_length();
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let capacity = declared.map_or(0, |length| length as usize).min(limit);
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify(url, &e, after))?
        {
            if chunk.len() > limit - body.len() {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn classify(&self, url: &str, error: &reqwest::Error, after: Duration) -> FetchError {
        let url = url.to_owned();
        if let Some(refusal) = crate::egress::refusal_in(error) {
            return FetchError::Refused {
                url,
                rule: refusal.rule,
                reason: refusal.to_string(),
            };
        }
        if error.is_timeout() {
            FetchError::Timeout { url, after }
        } else if error.is_redirect() {
            FetchError::TooManyRedirects {
                url,
                max: self.limits.max_redirects,
            }
        } else if error.is_connect() {
            FetchError::Connect {
                url,
                reason: root_cause(error),
            }
        } else if error.is_builder() {
            FetchError::InvalidUrl {
                url,
                reason: root_cause(error),
            }
        } else {
            FetchError::Transport {
                url,
                reason: root_cause(error),
            }
        }
    }
}

/// Default bound on the bytes of bodies the shared cache holds.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Default bound on the number of responses the shared cache holds.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;

/// One stored response.
#[derive(Clone, Debug)]
struct CacheEntry {
    url: String,
    content_type: Option<String>,
    body: Arc<[u8]>,
    /// When it was received (or last revalidated), less its `Age` on arrival.
    born: Instant,
    /// Its freshness lifetime (RFC 9111 §4.2.1).
    lifetime: Duration,
    /// `no-cache`: revalidate before every use.
    no_cache: bool,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Recency for eviction.
    used: u64,
}

/// A response's caching directives (RFC 9111 §5.2.2).
#[derive(Debug, Default)]
struct Directives {
    max_age: Option<Duration>,
    no_cache: bool,
    no_store: bool,
    private: bool,
}

impl Directives {
    fn parse(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => {
                        directives.max_age = argument
                            .and_then(|a| a.parse::<u64>().ok())
                            .map(Duration::from_secs);
                    }
                    "no-cache" => directives.no_cache = true,
                    "no-store" => directives.no_store = true,
                    "private" => directives.private = true,
                    _ => {}
                }
            }
        }
        directives
    }
}

impl CacheEntry {
    /// The entry for a fresh 200 response, or `None` when it must not be stored.
    fn from_response(fetched: &Fetched, headers: &HeaderMap, now: Instant) -> Option<Self> {
        let directives = Directives::parse(headers);
        if directives.no_store || directives.private {
            return None;
        }
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Some(Self {
            url: fetched.url.clone(),
            content_type: fetched.content_type.clone(),
            body: Arc::from(fetched.body.as_slice()),
            born: born(headers, now),
            lifetime: lifetime(&directives, headers),
            no_cache: directives.no_cache,
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
            used: 0,
        })
    }

    /// The entry after a 304: fresh again, with the validators and lifetime it carries.
    fn refreshed(mut self, headers: &HeaderMap, now: Instant) -> Self {
        let directives = Directives::parse(headers);
        self.born = born(headers, now);
        if directives.max_age.is_some() || headers.contains_key(EXPIRES) {
            self.lifetime = lifetime(&directives, headers);
            self.no_cache = directives.no_cache;
        }
        if let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) {
            self.etag = Some(etag.to_owned());
        }
        if let Some(modified) = headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()) {
            self.last_modified = Some(modified.to_owned());
        }
        self
    }

    /// Whether this fetch may use the entry without asking the server.
    fn usable(&self, now: Instant, options: FetchOptions) -> bool {
        let age = now.saturating_duration_since(self.born);
        // `maxage` 0 always revalidates, however quick the clock.
        let young_enough = options
            .maxage
            .is_none_or(|maxage| !maxage.is_zero() && age <= maxage);
        // Fresh while the lifetime exceeds the age (RFC 9111 §4.2); `maxstale` stretches it.
        let fresh_enough = self.lifetime > age
            || options.maxstale.is_some_and(|stale| {
                !stale.is_zero() && age <= self.lifetime.saturating_add(stale)
            });
        !self.no_cache && young_enough && fresh_enough
    }

    fn fetched(&self) -> Fetched {
        Fetched {
            url: self.url.clone(),
            status: 200,
            content_type: self.content_type.clone(),
            body: self.body.to_vec(),
        }
    }
}

/// When a response was generated, by our clock: `now` less its `Age` header.
fn born(headers: &HeaderMap, now: Instant) -> Instant {
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    now.checked_sub(age).unwrap_or(now)
}

/// The freshness lifetime: `max-age`, else `Expires` − `Date` (an unreadable `Expires`
/// means already expired, RFC 9111 §5.3), else zero.
fn lifetime(directives: &Directives, headers: &HeaderMap) -> Duration {
    if let Some(max_age) = directives.max_age {
        return max_age;
    }
    let Some(expires) = headers.get(EXPIRES) else {
        return Duration::ZERO;
    };
    let Some(expires) = expires.to_str().ok().and_then(parse_http_date) else {
        return Duration::ZERO;
    };
    let date = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let seconds = (expires - date).whole_seconds();
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// An HTTP-date in its preferred form, IMF-fixdate (RFC 9110 §5.6.7):
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(text: &str) -> Option<time::OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text.trim(), format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// Stored responses by URL, bounded in bytes and entries, least recently used out first.
#[derive(Debug)]
struct HttpCache {
    entries: HashMap<String, CacheEntry>,
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
    clock: u64,
}

impl HttpCache {
    fn new(max_bytes: usize, max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes,
            max_entries,
            clock: 0,
        }
    }

    fn lookup(&mut self, url: &str) -> Option<CacheEntry> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(url).map(|entry| {
            entry.used = clock;
            entry.clone()
        })
    }

    fn store(&mut self, url: String, mut entry: CacheEntry) {
        if let Some(old) = self.entries.remove(&url) {
            self.bytes -= old.body.len();
        }
        let size = entry.body.len();
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        while self.bytes + size > self.max_bytes || self.entries.len() >= self.max_entries {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(url, _)| url.clone())
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.body.len();
            }
        }
        self.clock += 1;
        entry.used = self.clock;
        self.bytes += size;
        self.entries.insert(url, entry);
    }
}

/// Random multipart boundaries; a counter stands in if the OS has no randomness to give.
fn boundary_source() -> impl FnMut() -> String {
    let mut fallback = 0u64;
    move || {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            fallback += 1;
            bytes[..8].copy_from_slice(&fallback.to_le_bytes());
        }
        format!("outdial-{}", hex::encode(bytes))
    }
}

/// A `multipart/form-data` body (RFC 7578) of `form` then `files`, with a boundary from
/// `boundary` that occurs in none of the parts; returns (Content-Type, body).
fn multipart_body(
    form: &[(String, String)],
    files: &[FilePart<'_>],
    boundary: &mut impl FnMut() -> String,
) -> (String, Vec<u8>) {
    let clashes = |candidate: &str| {
        let needle = candidate.as_bytes();
        let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        form.iter()
            .any(|(k, v)| contains(k.as_bytes()) || contains(v.as_bytes()))
            || files.iter().any(|f| contains(f.data))
    };
    let mut chosen = boundary();
    while clashes(&chosen) {
        chosen = boundary();
    }
    let mut body = Vec::new();
    for (name, value) in form {
        body.extend_from_slice(
            format!(
                "--{chosen}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n",
                quoted(name)
            )
            .as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    for file in files {
        body.extend_from_slice(
            format!(
                "--{chosen}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
                 Content-Type: {}\r\n\r\n",
                quoted(file.name),
                quoted(file.filename),
                file.content_type.replace(['\r', '\n'], "")
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{chosen}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={chosen}"), body)
}

/// A name for a quoted-string in Content-Disposition, escaped as HTML's form submission
/// does: `"` as `%22`, CR as `%0D`, LF as `%0A`.
fn quoted(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Parses `url` and accepts only `http` and `https`.
fn checked_url(url: &str) -> Result<Url, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        scheme => Err(FetchError::UnsupportedScheme {
            url: url.to_owned(),
            scheme: scheme.to_owned(),
        }),
    }
}

/// The innermost cause of an error, which is the one that says what happened
/// ("Connection refused"), rather than reqwest's "error sending request".
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::{get, post};

    use super::*;

    const AGENT: &str = "outdial-test/1";

    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route(
                "/ok",
                get(|| async { ([(CONTENT_TYPE, "text/plain")], "hello") }),
            )
            .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
            .route(
                "/hop/{n}",
                get(|Path(n): Path<u32>| async move {
                    if n == 0 {
                        "arrived".into_response()
                    } else {
                        Redirect::temporary(&format!("/hop/{}", n - 1)).into_response()
                    }
                }),
            )
            .route("/big", get(|| async { vec![7u8; 100_000] }))
            .route(
                "/elsewhere/{port}",
                get(|Path(port): Path<u16>| async move {
                    Redirect::temporary(&format!("http://127.0.0.2:{port}/ok")).into_response()
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/agent",
                get(|headers: HeaderMap| async move {
                    headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned()
                }),
            )
            .route(
                "/echo",
                post(|headers: HeaderMap, body: String| async move {
                    let kind = headers
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    format!("{kind}\n{body}")
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// A hand-written HTTP/1.1 server for what axum makes awkward: it answers every request
    /// with a chunked body of `chunks` chunks of 1,000 bytes, sleeping `pause` before each.
    async fn serve_chunked(chunks: usize, pause: Duration) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for _ in 0..chunks {
                        tokio::time::sleep(pause).await;
                        let mut chunk = b"3e8\r\n".to_vec();
                        chunk.extend_from_slice(&[1u8; 1_000]);
                        chunk.extend_from_slice(b"\r\n");
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        addr
    }

    fn fetcher(timeout: Duration) -> Fetcher {
        Fetcher::new(AGENT, timeout).unwrap()
    }

    #[tokio::test]
    async fn get_returns_body_status_and_content_type() {
        let addr = serve().await;
        let url = format!("http://{addr}/ok");
        let got = fetcher(Duration::from_secs(5))
            .get(&url, 1024)
            .await
            .unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.body, b"hello");
        assert_eq!(got.url, url);
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    }

    #[tokio::test]
    async fn sends_the_configured_user_agent() {
        let addr = serve().await;
        let got = fetcher(Duration::from_secs(5))
            .get(&format!("http://{addr}/agent"), 1024)
            .await
            .unwrap();
        assert_eq!(got.body, AGENT.as_bytes());
    }

    #[tokio::test]
    async fn non_2xx_is_a_status_error() {
        let addr = serve().await;
        let url = format!("http://{addr}/missing");
        let err = fetcher(Duration::from_secs(5))
            .get(&url, 1024)
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Status { url, status: 404 });
    }

    #[tokio::test]
    async fn a_restricted_fetcher_keeps_to_its_tenants_rules_on_every_hop() {
        let addr = serve().await;
        let mut config = crate::egress::EgressConfig::default();
        config
            .allow
            .insert("t".to_owned(), vec!["127.0.0.1/32".to_owned()]);
        let policy = crate::egress::EgressPolicy::new(&config);
        let fetchers = TenantFetchers::new(fetcher(Duration::from_secs(5)), policy);
        let allowed = fetchers.for_tenant("t");
        let got = allowed.get(&format!("http://{addr}/ok"), 1024).await;
        assert_eq!(got.map(|f| f.body).ok(), Some(b"hello".to_vec()));
        // A redirect from the allowed address to another loopback address: refused at the hop.
        let hop = allowed
            .get(&format!("http://{addr}/elsewhere/{}", addr.port()), 1024)
            .await;
        assert!(
            matches!(
                &hop,
                Err(FetchError::Refused {
                    rule: "egress.loopback",
                    ..
                })
            ),
            "{hop:?}"
        );
        // An address literal outside the allow-list, and a name resolving to loopback, for a
        // tenant with the default rules.
        let other = fetchers.for_tenant("other");
        for url in [
            format!("http://{addr}/ok"),
            format!("http://[::1]:{}/ok", addr.port()),
            format!("http://localhost:{}/ok", addr.port()),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ] {
            let refused = other.get(&url, 1024).await;
            let Err(FetchError::Refused { rule, reason, .. }) = &refused else {
                panic!("{url}: {refused:?}");
            };
            assert!(
                rule.starts_with("egress.") && reason.contains(rule),
                "{url}: {reason}"
            );
        }
        // The development tenant is not restricted.
        assert!(
            fetchers
                .for_tenant("dev")
                .get(&format!("http://{addr}/ok"), 1024)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn follows_redirects_and_reports_the_final_url() {
        let addr = serve().await;
        let got = fetcher(Duration::from_secs(5))
            .get(&format!("http://{addr}/hop/5"), 1024)
            .await
            .unwrap();
        assert_eq!(got.body, b"arrived");
        assert_eq!(got.url, format!("http://{addr}/hop/0"));
    }

    #[tokio::test]
    async fn too_many_redirects_is_an_error() {
        let addr = serve().await;
        let url = format!("http://{addr}/hop/6");
        let err = fetcher(Duration::from_secs(5))
            .get(&url, 1024)
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::TooManyRedirects { url, max: 5 });
    }

    #[tokio::test]
    async fn body_over_the_limit_is_refused() {
        let addr = serve().await;
        let chunked = serve_chunked(100, Duration::ZERO).await;
        let fetcher = fetcher(Duration::from_secs(5));
        // One declares its length up front; the other streams with no Content-Length.
        for url in [format!("http://{addr}/big"), format!("http://{chunked}/")] {
            let err = fetcher.get(&url, 50_000).await.unwrap_err();
            assert_eq!(
                err,
                FetchError::TooLarge {
                    url: url.clone(),
                    limit: 50_000
                }
            );
            let exact = fetcher.get(&url, 100_000).await.unwrap();
            assert_eq!(exact.body.len(), 100_000, "{url}");
        }
    }

    #[tokio::test]
    async fn body_that_trickles_past_the_timeout_times_out() {
        let addr = serve_chunked(10, Duration::from_millis(100)).await;
        let url = format!("http://{addr}/");
        let timeout = Duration::from_millis(350);
        let err = fetcher(timeout).get(&url, 1 << 20).await.unwrap_err();
        assert_eq!(
            err,
            FetchError::Timeout {
                url,
                after: timeout
            }
        );
    }

    #[tokio::test]
    async fn fetcher_ceiling_caps_each_call() {
        let addr = serve().await;
        let limits = FetchLimits {
            max_bytes: 10,
            ..FetchLimits::with_timeout(Duration::from_secs(5))
        };
        let fetcher = Fetcher::with_limits(AGENT, limits).unwrap();
        let url = format!("http://{addr}/big");
        let err = fetcher.get(&url, 1 << 20).await.unwrap_err();
        assert_eq!(err, FetchError::TooLarge { url, limit: 10 });
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let addr = serve().await;
        let url = format!("http://{addr}/slow");
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = fetcher(timeout).get(&url, 1024).await.unwrap_err();
        assert_eq!(
            err,
            FetchError::Timeout {
                url,
                after: timeout
            }
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/");
        let err = fetcher(Duration::from_secs(5))
            .get(&url, 1024)
            .await
            .unwrap_err();
        let FetchError::Connect { url: named, reason } = &err else {
            panic!("expected a connect error, got {err:?}");
        };
        assert_eq!(named, &url);
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
        assert!(err.to_string().contains(&url));
    }

    #[tokio::test]
    async fn bad_urls_and_schemes_are_refused_before_any_io() {
        let fetcher = fetcher(Duration::from_secs(5));
        let err = fetcher.get("not a url", 1024).await.unwrap_err();
        assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");
        let err = fetcher.get("/relative/path.vxml", 1024).await.unwrap_err();
        assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");
        for url in ["file:///etc/passwd", "ftp://example.com/a.wav"] {
            let err = fetcher.get(url, 1024).await.unwrap_err();
            assert!(
                matches!(&err, FetchError::UnsupportedScheme { url: u, .. } if u == url),
                "{err:?}"
            );
            assert!(err.to_string().contains("use http:// or https://"));
        }
    }

    #[tokio::test]
    async fn post_form_sends_an_urlencoded_body() {
        let addr = serve().await;
        let form = [
            ("digits".to_owned(), "1 2#".to_owned()),
            ("name".to_owned(), "a&b=ü".to_owned()),
        ];
        let got = fetcher(Duration::from_secs(5))
            .post_form(&format!("http://{addr}/echo"), &form, 1024)
            .await
            .unwrap();
        let text = String::from_utf8(got.body).unwrap();
        let (kind, body) = text.split_once('\n').unwrap();
        assert_eq!(kind, "application/x-www-form-urlencoded");
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded, form);
    }

    /// Requests per path, and how many of them were answered 304.
    #[derive(Default)]
    struct Counts {
        requests: Mutex<HashMap<String, usize>>,
        not_modified: std::sync::atomic::AtomicUsize,
    }

    impl Counts {
        fn of(&self, path: &str) -> usize {
            self.requests
                .lock()
                .unwrap()
                .get(path)
                .copied()
                .unwrap_or(0)
        }
    }

    /// A server whose responses carry caching headers, counting what it is asked.
    async fn serve_cacheable() -> (SocketAddr, Arc<Counts>) {
        use axum::extract::State;
        use axum::http::Uri;
        let counts = Arc::new(Counts::default());
        let handler = |State(counts): State<Arc<Counts>>, uri: Uri, headers: HeaderMap| async move {
            let path = uri.path().to_owned();
            *counts
                .requests
                .lock()
                .unwrap()
                .entry(path.clone())
                .or_default() += 1;
            let n = counts.of(&path);
            let request_header = |name| {
                headers
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let fixed = |cache_control: &'static str| {
                ([(CACHE_CONTROL, cache_control)], format!("{path} #{n}")).into_response()
            };
            match path.as_str() {
                "/fresh" => fixed("max-age=60"),
                "/no-store" => fixed("no-store, max-age=60"),
                "/private" => fixed("private, max-age=60"),
                "/aged" => (
                    [(CACHE_CONTROL, "max-age=10"), (AGE, "15")],
                    format!("aged #{n}"),
                )
                    .into_response(),
                "/expires" => (
                    [
                        (DATE, "Sun, 06 Nov 1994 08:49:37 GMT"),
                        (EXPIRES, "Sun, 06 Nov 1994 08:50:37 GMT"),
                    ],
                    format!("expires #{n}"),
                )
                    .into_response(),
                "/expired" => ([(EXPIRES, "0")], format!("expired #{n}")).into_response(),
                "/etag" if request_header(IF_NONE_MATCH).as_deref() == Some("\"v1\"") => {
                    counts
                        .not_modified
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    (StatusCode::NOT_MODIFIED, [(ETAG, "\"v1\"")]).into_response()
                }
                "/etag" => (
                    [(ETAG, "\"v1\""), (CACHE_CONTROL, "no-cache")],
                    format!("etag #{n}"),
                )
                    .into_response(),
                "/modified"
                    if request_header(IF_MODIFIED_SINCE).as_deref()
                        == Some("Tue, 01 Jan 2030 00:00:00 GMT") =>
                {
                    counts
                        .not_modified
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    StatusCode::NOT_MODIFIED.into_response()
                }
                "/modified" => (
                    [(LAST_MODIFIED, "Tue, 01 Jan 2030 00:00:00 GMT")],
                    format!("modified #{n}"),
                )
                    .into_response(),
                _ => fixed("max-age=60"),
            }
        };
        let app = Router::new()
            .fallback(handler)
            .with_state(Arc::clone(&counts));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, counts)
    }

    async fn body_of(fetcher: &Fetcher, url: &str, options: FetchOptions) -> String {
        let got = fetcher.get_cached(url, 1 << 20, options).await.unwrap();
        String::from_utf8(got.body).unwrap()
    }

    #[tokio::test]
    async fn a_fresh_response_is_served_from_the_cache_until_maxage_forbids_it() {
        let (addr, counts) = serve_cacheable().await;
        let fetcher = fetcher(Duration::from_secs(5));
        let url = format!("http://{addr}/fresh");
        let any = FetchOptions::default();
        assert_eq!(body_of(&fetcher, &url, any).await, "/fresh #1");
        assert_eq!(body_of(&fetcher.clone(), &url, any).await, "/fresh #1");
        assert_eq!(counts.of("/fresh"), 1, "clones share the cache");
        let strict = FetchOptions {
            maxage: Some(Duration::ZERO),
            ..any
        };
        assert_eq!(body_of(&fetcher, &url, strict).await, "/fresh #2");
        assert_eq!(counts.of("/fresh"), 2);
        // A plain `get` never uses the cache.
        fetcher.get(&url, 1024).await.unwrap();
        assert_eq!(counts.of("/fresh"), 3);
    }

    #[tokio::test]
    async fn no_store_and_private_responses_are_not_kept() {
        let (addr, counts) = serve_cacheable().await;
        let fetcher = fetcher(Duration::from_secs(5));
        for path in ["/no-store", "/private"] {
            let url = format!("http://{addr}{path}");
            body_of(&fetcher, &url, FetchOptions::default()).await;
            body_of(&fetcher, &url, FetchOptions::default()).await;
            assert_eq!(counts.of(path), 2, "{path}");
        }
    }

    #[tokio::test]
    async fn a_stale_response_is_used_only_within_maxstale() {
        let (addr, counts) = serve_cacheable().await;
        let fetcher = fetcher(Duration::from_secs(5));
        let url = format!("http://{addr}/aged");
        // max-age 10 s, Age 15 s: five seconds stale on arrival.
        body_of(&fetcher, &url, FetchOptions::default()).await;
        assert_eq!(
            body_of(&fetcher, &url, FetchOptions::default()).await,
            "aged #2"
        );
        let lenient = FetchOptions {
            maxstale: Some(Duration::from_secs(60)),
            ..FetchOptions::default()
        };
        assert_eq!(body_of(&fetcher, &url, lenient).await, "aged #2");
        let too_little = FetchOptions {
            maxstale: Some(Duration::from_secs(2)),
            ..FetchOptions::default()
        };
        assert_eq!(body_of(&fetcher, &url, too_little).await, "aged #3");
        assert_eq!(counts.of("/aged"), 3);
    }

    #[tokio::test]
    async fn expires_counts_from_the_date_header_and_a_bad_one_is_expired() {
        let (addr, counts) = serve_cacheable().await;
        let fetcher = fetcher(Duration::from_secs(5));
        let url = format!("http://{addr}/expires");
        body_of(&fetcher, &url, FetchOptions::default()).await;
        assert_eq!(
            body_of(&fetcher, &url, FetchOptions::default()).await,
            "expires #1"
        );
        let url = format!("http://{addr}/expired");
        body_of(&fetcher, &url, FetchOptions::default()).await;
        assert_eq!(
            body_of(&fetcher, &url, FetchOptions::default()).await,
            "expired #2"
        );
        assert_eq!((counts.of("/expires"), counts.of("/expired")), (1, 2));
    }

    #[tokio::test]
    async fn validators_revalidate_and_a_304_serves_the_stored_body() {
        let (addr, counts) = serve_cacheable().await;
        let fetcher = fetcher(Duration::from_secs(5));
        for path in ["/etag", "/modified"] {
            let url = format!("http://{addr}{path}");
            let first = body_of(&fetcher, &url, FetchOptions::default()).await;
            assert!(first.ends_with("#1"), "{first}");
            for _ in 0..2 {
                let again = fetcher
                    .get_cached(&url, 1 << 20, FetchOptions::default())
                    .await
                    .unwrap();
                assert_eq!(String::from_utf8(again.body).unwrap(), first);
                assert_eq!(again.status, 200);
            }
            assert_eq!(counts.of(path), 3, "{path}: every use asks the server");
        }
        let not_modified = counts
            .not_modified
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(not_modified, 4);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let (addr, counts) = serve_cacheable().await;
        let fetcher = fetcher(Duration::from_secs(5)).with_cache(1 << 20, 2);
        let url = |p: &str| format!("http://{addr}{p}");
        let any = FetchOptions::default();
        body_of(&fetcher, &url("/a"), any).await;
        body_of(&fetcher, &url("/b"), any).await;
        body_of(&fetcher, &url("/a"), any).await; // /a is now the most recent
        body_of(&fetcher, &url("/c"), any).await; // evicts /b
        body_of(&fetcher, &url("/a"), any).await;
        body_of(&fetcher, &url("/b"), any).await;
        assert_eq!(
            (counts.of("/a"), counts.of("/b"), counts.of("/c")),
            (1, 2, 1)
        );

        let tiny = fetcher.with_cache(4, 100);
        body_of(&tiny, &url("/d"), any).await;
        body_of(&tiny, &url("/d"), any).await;
        assert_eq!(
            counts.of("/d"),
            2,
            "a body over the byte bound is not stored"
        );
    }

    #[tokio::test]
    async fn a_per_fetch_timeout_overrides_the_fetchers() {
        let addr = serve().await;
        let url = format!("http://{addr}/slow");
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = fetcher(Duration::from_secs(30))
            .get_within(&url, 1024, Some(timeout))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            FetchError::Timeout {
                url,
                after: timeout
            }
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// Splits a multipart body into (headers, content) per part.
    fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("multipart content type");
        let delimiter = format!("--{boundary}");
        let text = body;
        let mut found = Vec::new();
        let positions: Vec<usize> = text
            .windows(delimiter.len())
            .enumerate()
            .filter(|(_, w)| *w == delimiter.as_bytes())
            .map(|(i, _)| i)
            .collect();
        for pair in positions.windows(2) {
            let part = &text[pair[0] + delimiter.len() + 2..pair[1] - 2];
            let split = part
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("part headers");
            found.push((
                String::from_utf8(part[..split].to_vec()).unwrap(),
                part[split + 4..].to_vec(),
            ));
        }
        let last = *positions.last().expect("closing delimiter");
        assert_eq!(&text[last..], format!("{delimiter}--\r\n").as_bytes());
        found
    }

    #[tokio::test]
    async fn post_multipart_sends_fields_then_files() {
        let app = Router::new().route(
            "/upload",
            post(|headers: HeaderMap, body: axum::body::Bytes| async move {
                let kind = headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                let mut out = kind.into_bytes();
                out.push(b'\n');
                out.extend_from_slice(&body);
                out
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let wav = [b'R', b'I', b'F', b'F', 0, 1, 2, 255, b'\r', b'\n'];
        let files = [FilePart {
            name: "msg",
            filename: "msg.wav",
            content_type: "audio/wav",
            data: &wav,
        }];
        let form = [("caller".to_owned(), "Ada \"L\"".to_owned())];
        let got = fetcher(Duration::from_secs(5))
            .post_multipart(&format!("http://{addr}/upload"), &form, &files, 4096, None)
            .await
            .unwrap();
        let split = got.body.iter().position(|&b| b == b'\n').unwrap();
        let content_type = String::from_utf8(got.body[..split].to_vec()).unwrap();
        let found = parts(&content_type, &got.body[split + 1..]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].0,
            "Content-Disposition: form-data; name=\"caller\""
        );
        assert_eq!(found[0].1, b"Ada \"L\"");
        assert_eq!(
            found[1].0,
            "Content-Disposition: form-data; name=\"msg\"; filename=\"msg.wav\"\r\nContent-Type: audio/wav"
        );
        assert_eq!(found[1].1, wav);
    }

    #[test]
    fn a_boundary_found_in_the_data_is_replaced_and_names_are_escaped() {
        let mut candidates = ["clash".to_owned(), "fresh".to_owned()].into_iter();
        let files = [FilePart {
            name: "a\"b\r\n",
            filename: "x.wav",
            content_type: "audio/wav",
            data: b"--clash--",
        }];
        let (content_type, body) =
            multipart_body(&[], &files, &mut || candidates.next().unwrap_or_default());
        assert_eq!(content_type, "multipart/form-data; boundary=fresh");
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("name=\"a%22b%0D%0A\""), "{text}");
        assert!(text.ends_with("\r\n--fresh--\r\n"), "{text}");
    }

    #[test]
    fn http_dates_parse_in_imf_fixdate_form_only() {
        let date = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(date.unix_timestamp(), 784_111_777);
        assert_eq!(parse_http_date("0"), None);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn invalid_user_agent_is_a_client_error() {
        let err = Fetcher::new("bad\nagent", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, FetchError::Client { .. }), "{err:?}");
    }
}
