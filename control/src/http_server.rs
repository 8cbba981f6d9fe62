//! The API's HTTP/1.1 server: header, body and idle timeouts, and a cap on connections that
//! keeps file descriptors in reserve for calls.
//!
//! Every accepted connection is a file descriptor, and so is every call's RTP socket. The cap
//! is computed from the process's descriptor limit (raised to its hard limit at start) minus
//! what calls need, so idle or hostile HTTP clients can never make a call fail with "Too many
//! open files". Connections beyond the cap are answered `503` and closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower_http::timeout::RequestBodyTimeout;

/// Descriptors kept for everything but calls and HTTP: the store, logs, dataplane sockets
/// and event queues, the runtime, outgoing fetch and webhook connections.
pub const FDS_RESERVED: u64 = 256;

/// Descriptors one live call may hold: its RTP and RTCP sockets, a fetch connection, and the
/// pipes of a text-to-speech process.
pub const FDS_PER_CALL: u64 = 5;

/// Fewest HTTP connections a server may be left with; below this the limit is too low.
pub const MIN_CONNECTIONS: usize = 16;

/// Concurrent refusals (a 503 being written) beyond which excess connections are just closed.
const MAX_REFUSING: usize = 64;

/// How the HTTP server limits its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers, counted from when the server starts
    /// waiting for the request (so it also closes connections that stay silent).
    pub header_timeout: Duration,
    /// Time a client has to send a request's body.
    pub body_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // An "unlimited" limit is not a number the kernel accepts for descriptors; use its ceiling.
    const CEILING: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(CEILING);
    let hard = limit.maximum.unwrap_or(CEILING);
    if soft < hard {
        let raised = Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the file descriptor limit")
            }
        }
    }
    soft
}

/// The connection cap for a descriptor limit `fd_limit`: `configured` when it is not 0 and
/// fits, else everything left after calls' reserve. The error says what to change.
pub fn connection_cap(fd_limit: u64, max_calls: usize, configured: usize) -> Result<usize, String> {
    let reserve = FDS_RESERVED.saturating_add(FDS_PER_CALL.saturating_mul(max_calls as u64));
    let left = usize::try_from(fd_limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    let explain = || {
        format!(
            "the file descriptor limit is {fd_limit} and {reserve} are kept for calls \
             ({FDS_RESERVED} + {FDS_PER_CALL} per call × calls.max_concurrent = {max_calls})"
        )
    };
    if configured > left {
        return Err(format!(
            "`http.max_connections` = {configured} does not fit: {}; lower it, lower \
             calls.max_concurrent, or raise the limit (LimitNOFILE= in the systemd unit)",
            explain()
        ));
    }
    if left < MIN_CONNECTIONS {
        return Err(format!(
            "too few file descriptors for HTTP connections: {}; raise the limit \
             (LimitNOFILE= in the systemd unit, `ulimit -n`) or lower calls.max_concurrent",
            explain()
        ));
    }
    Ok(if configured == 0 { left } else { configured })
}

/// Serves `app` on `listener` within `limits` until `stop` turns true, then lets requests in
/// progress finish (for up to `limits.header_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
) {
    serve_tls(listener, app, limits, None, stop).await;
}

/// Like [`serve`], over TLS with the reloader's current configuration when `tls` is given
/// (the handshake must finish within `limits.header_timeout`).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Arc<crate::http_tls::TlsReloader>>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    metrics::gauge!("outdial_http_connections_max").set(limits.max_connections as f64);
    let (closing_tx, closing_rx) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { stop.wait_for(|stop| *stop).await.map(|_| ()) } => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a little
                // rather than spin.
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let gauge = limits.max_connections - slots.available_permits();
                metrics::gauge!("outdial_http_connections").set(gauge as f64);
                let conn = Conn::new(stream, limits.idle_timeout, permit);
                let (app, closing) = (app.clone(), closing_rx.clone());
                match &tls {
                    None => {
                        tokio::spawn(serve_connection(conn, peer, app, limits, closing));
                    }
                    Some(tls) => {
                        let acceptor = tls.acceptor();
                        tokio::spawn(async move {
                            let handshake = acceptor.accept(conn);
                            match tokio::time::timeout(limits.header_timeout, handshake).await {
                                Ok(Ok(stream)) => {
                                    serve_connection(stream, peer, app, limits, closing).await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            Err(_) => {
                metrics::counter!("outdial_http_connections_refused_total").increment(1);
                tracing::debug!(%peer, "HTTP connection refused: at http.max_connections");
                if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                    tokio::spawn(refuse(stream, permit));
                }
            }
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Requests in progress finish; idle keep-alive connections close at once.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.header_timeout, slots.acquire_many(all)).await;
}

/// The access log: one debug line per API request, after its answer (method, path without
/// the query, which may carry numbers, status and time taken).
pub async fn access_log(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(
        target: "outdial_control::access",
        method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn serve_connection<I>(
    conn: I,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(RequestBodyTimeout::new(app, limits.body_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(conn), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Answers a connection over the cap with `503` and closes it after reading what the client
/// sent (closing with unread data would reset the connection and lose the answer).
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    const BODY: &str = r#"{"error":{"code":"too_many_connections","message":"the server is at http.max_connections; retry later"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let refused = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), refused).await;
}

/// An accepted connection: holds its slot under the cap, and fails its reads and writes once
/// no byte has moved for the idle timeout.
struct Conn {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Conn {
    fn new(stream: TcpStream, idle: Duration, slot: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _slot: slot,
        }
    }

    fn moved(&mut self) {
        let idle = self.idle;
        self.deadline.as_mut().reset(Instant::now() + idle);
    }

    /// `Pending` while within the idle timeout, else the error that closes the connection.
    fn poll_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no byte moved for http.idle_timeout_secs",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The slot is released after this; count it as gone already.
        metrics::gauge!("outdial_http_connections").decrement(1.0);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.moved();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, data) {
            Poll::Ready(result) => {
                this.moved();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, data) {
            Poll::Ready(result) => {
                this.moved();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[test]
    fn the_cap_keeps_descriptors_for_calls() {
        // 1024 descriptors, 100 calls: 256 + 500 kept, 268 left for HTTP.
        assert_eq!(connection_cap(1024, 100, 0), Ok(268));
        assert_eq!(connection_cap(1024, 100, 200), Ok(200));
        let too_many = connection_cap(1024, 100, 269).err().unwrap_or_default();
        assert!(
            too_many.contains("http.max_connections") && too_many.contains("756 are kept"),
            "{too_many}"
        );
        // The default 1000 calls do not fit in 1024 descriptors at all.
        let too_low = connection_cap(1024, 1000, 0).err().unwrap_or_default();
        assert!(too_low.contains("LimitNOFILE"), "{too_low}");
        assert_eq!(connection_cap(1 << 20, 1000, 0), Ok((1 << 20) - 5256));
        assert!(
            connection_cap(u64::MAX, usize::MAX, 0).is_err(),
            "no overflow"
        );
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let limit = raise_fd_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, Some(limit));
        assert_eq!(now.current, now.maximum.or(now.current));
    }

    async fn server(limits: HttpLimits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let app = Router::new().route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body }),
        );
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, app, limits, stopped));
        (addr, stop)
    }

    const LIMITS: HttpLimits = HttpLimits {
        header_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 2,
    };

    async fn read_all(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn connections_over_the_cap_get_503_and_the_others_are_served() {
        let (addr, _stop) = server(LIMITS).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(
                TcpStream::connect(addr)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        tokio::task::yield_now().await;
        let mut third = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_all(&mut third).await;
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("too_many_connections"),
            "{answer}"
        );
        let request =
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi";
        let first = held.first_mut().unwrap_or_else(|| panic!("no connection"));
        first
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_all(first).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn silent_connections_and_stalled_bodies_are_closed() {
        let quick = Duration::from_millis(300);
        let limits = HttpLimits {
            header_timeout: quick,
            body_timeout: quick,
            idle_timeout: Duration::from_secs(30),
            max_connections: 2,
        };
        let (addr, _stop) = server(limits).await;
        // Silent: closed by the header timeout, with nothing written.
        let mut silent = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_all(&mut silent).await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
        // A body promised but never sent: the body timeout ends the request.
        let mut stalled = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stalled
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhi")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_all(&mut stalled).await;
        assert!(!answer.contains("\r\n\r\nhi"), "{answer}");
        // The slots came back: two more connections are served.
        for _ in 0..2 {
            let mut again = TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            again
                .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let answer = read_all(&mut again).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }

    #[tokio::test]
    async fn stopping_lets_a_request_in_progress_finish() {
        let (addr, stop) = server(LIMITS).await;
        let mut client = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nab")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        client
            .write_all(b"cd")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = read_all(&mut client).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("abcd"),
            "{answer}"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }
}
