//! HTTP fetching for VoiceXML documents, audio files and `<submit>`s.
//!
//! One [`Fetcher`] wraps one `reqwest::Client`, so every call runner shares its connection
//! pool. Each fetch is bounded three ways: a total timeout (connect, headers and body),
//! a body size limit enforced while streaming (the body is never read past the limit), and a
//! redirect limit. Only `http` and `https` URLs are fetched (VoiceXML 2.1 §5.1 leaves the
//! scheme set to the platform).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Response, redirect};
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

/// Fetches resources over HTTP(S). Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: Client,
    limits: FetchLimits,
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
        Ok(Self { client, limits })
    }

    /// The limits this fetcher applies.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// `GET url`, reading at most `max_bytes` of body.
    pub async fn get(&self, url: &str, max_bytes: usize) -> Result<Fetched, FetchError> {
        let target = checked_url(url)?;
        let request = self.client.get(target);
        self.send(url, request, max_bytes).await
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
        let target = checked_url(url)?;
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
        self.send(url, request, max_bytes).await
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        max_bytes: usize,
    ) -> Result<Fetched, FetchError> {
        let limit = max_bytes.min(self.limits.max_bytes);
        let mut response = request.send().await.map_err(|e| self.classify(url, &e))?;
        let final_url = response.url().to_string();
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: final_url,
                status: status.as_u16(),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = self.read_body(&mut response, &final_url, limit).await?;
        Ok(Fetched {
            url: final_url,
            status: status.as_u16(),
            content_type,
            body,
        })
    }

    /// Streams the body chunk by chunk, stopping as soon as it would pass `limit`.
    async fn read_body(
        &self,
        response: &mut Response,
        url: &str,
        limit: usize,
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
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(url, &e))? {
            if chunk.len() > limit - body.len() {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn classify(&self, url: &str, error: &reqwest::Error) -> FetchError {
        let url = url.to_owned();
        if error.is_timeout() {
            FetchError::Timeout {
                url,
                after: self.limits.timeout,
            }
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
        let started = std::time::Instant::now();
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

    #[test]
    fn invalid_user_agent_is_a_client_error() {
        let err = Fetcher::new("bad\nagent", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, FetchError::Client { .. }), "{err:?}");
    }
}
