//! The SMTP listener: a thin tokio shell around [`Session`]. It accepts connections (capped
//! in all and per source address), moves bytes, runs the STARTTLS handshake, asks the
//! [`Delivery`] what the session asks, and stops gracefully.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::delivery::Delivery;
use super::session::{Answer, DEFAULT_MAX_LINE_BYTES, Event, Session, SessionConfig};
use crate::config::SmtpConfig;

/// Why the SMTP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The listen address is taken or not ours.
    #[error("cannot listen for SMTP on {addr}: {source} (set [smtp] listen to a free address)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key file cannot be used.
    #[error(
        "cannot use {path} for STARTTLS: {reason} (set [smtp] tls_cert and tls_key to readable \
         PEM files)"
    )]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error(
        "the STARTTLS certificate and key do not work together: {0} (check [smtp] tls_cert and tls_key)"
    )]
    Tls(rustls::Error),
}

/// A running SMTP listener.
#[derive(Debug)]
pub struct SmtpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SmtpServer {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the listener and its sessions have stopped (after the shutdown signal).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// How long sessions may take to finish after the shutdown signal before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Connections being refused (sent a `421`) at once; more are dropped without a word.
const MAX_REFUSING: usize = 64;
/// Time the final reply of a session or a refusal may take to write.
const FINAL_WRITE: Duration = Duration::from_secs(2);

struct Shared {
    session: Arc<SessionConfig>,
    delivery: Arc<dyn Delivery>,
    acceptor: Option<TlsAcceptor>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    max_per_source: usize,
}

/// Binds `config.listen` and serves SMTP until `shutdown` turns `true`. See the module
/// documentation of [`crate::smtp`] for the contract.
pub async fn spawn(
    config: &SmtpConfig,
    delivery: Arc<dyn Delivery>,
    shutdown: watch::Receiver<bool>,
) -> Result<SmtpServer, SmtpError> {
    let acceptor = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(super::tls::server_config(cert, key)?)),
        _ => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| SmtpError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SmtpError::Bind {
        addr: config.listen,
        source,
    })?;
    let session = Arc::new(SessionConfig {
        hostname: config.hostname(),
        max_message_bytes: config.max_message_bytes,
        max_recipients: config.max_recipients,
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        max_errors: config.max_errors,
        command_timeout: Duration::from_secs(config.command_timeout_secs),
        data_timeout: Duration::from_secs(config.data_timeout_secs),
        starttls: acceptor.is_some(),
        auth_on_loopback: config.auth_on_loopback,
    });
    if acceptor.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "SMTP listens beyond loopback without STARTTLS: AUTH is not offered (set [smtp] \
             tls_cert and tls_key)"
        );
    }
    tracing::info!(
        %addr,
        starttls = acceptor.is_some(),
        max_connections = config.max_connections,
        "SMTP listening"
    );
    let shared = Arc::new(Shared {
        session,
        delivery,
        acceptor,
        per_source: Mutex::new(HashMap::new()),
        max_per_source: config.max_connections_per_source,
    });
    let task = tokio::spawn(accept_loop(
        listener,
        shared,
        config.max_connections,
        shutdown,
    ));
    Ok(SmtpServer { addr, task })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an SMTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        metrics::counter!("outdial_smtp_connections_total").increment(1);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refuse(
                stream,
                &refusing,
                "421 4.7.0 Too many connections: try again later\r\n",
            );
            metrics::counter!("outdial_smtp_connections_refused_total", "reason" => "total")
                .increment(1);
            continue;
        };
        let Some(source) = SourceSlot::take(&shared, peer.ip()) else {
            refuse(
                stream,
                &refusing,
                "421 4.7.0 Too many connections from your address: try again later\r\n",
            );
            metrics::counter!("outdial_smtp_connections_refused_total", "reason" => "source")
                .increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        sessions.spawn(async move {
            serve_connection(stream, peer, &shared, shutdown).await;
            drop(source);
            drop(slot);
        });
    }
    drop(listener);
    // Sessions see the same signal and end at their next command boundary.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "SMTP sessions still busy after the shutdown grace: cutting them"
        );
        sessions.shutdown().await;
    }
    tracing::info!("SMTP listener stopped");
}

/// Sends a one-line refusal and closes, without holding up the accept loop.
fn refuse(mut stream: TcpStream, refusing: &Arc<Semaphore>, line: &'static str) {
    let Ok(permit) = Arc::clone(refusing).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FINAL_WRITE, async {
            let _ = stream.write_all(line.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        drop(permit);
    });
}

/// One connection counted against its source address; released on drop.
struct SourceSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let ip = ip.to_canonical();
        let mut counts = shared.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= shared.max_per_source {
            return None;
        }
        *count += 1;
        Some(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self
            .shared
            .per_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The connection, before or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Ends our side, then reads and drops what the client still sends for a moment, so the
    /// last reply is not lost to a TCP reset caused by unread input.
    async fn linger_close(mut self) {
        let _ = tokio::time::timeout(FINAL_WRITE, async {
            let _ = match &mut self {
                Self::Plain(s) => s.shutdown().await,
                Self::Tls(s) => s.shutdown().await,
            };
            let mut sink = [0u8; 4096];
            let mut left = 1 << 20;
            while left > 0 {
                match self.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n.min(left),
                }
            }
        })
        .await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "SMTP session opened");
    let mut session = Session::new(Arc::clone(&shared.session), peer, false, Instant::now());
    let mut conn = Some(Conn::Plain(stream));
    let mut buf = vec![0u8; 16 * 1024];
    let mut stopping = false;
    loop {
        while let Some(event) = session.poll_event() {
            let Some(c) = conn.as_mut() else { return };
            match event {
                Event::Send(bytes) => {
                    let write =
                        tokio::time::timeout(shared.session.command_timeout, c.write_all(&bytes));
                    if !matches!(write.await, Ok(Ok(()))) {
                        return;
                    }
                }
                Event::CheckRecipient {
                    envelope,
                    recipient,
                } => {
                    let result = shared.delivery.check_recipient(&envelope, &recipient).await;
                    session.handle_answer(Instant::now(), Answer::Recipient(result));
                }
                Event::Authenticate { user, password } => {
                    let identity = shared.delivery.authenticate(&user, &password).await;
                    metrics::counter!(
                        "outdial_smtp_auth_total",
                        "result" => if identity.is_some() { "ok" } else { "refused" }
                    )
                    .increment(1);
                    session.handle_answer(Instant::now(), Answer::Authenticated(identity));
                }
                Event::Deliver { envelope, message } => {
                    let (recipients, bytes) = (envelope.rcpt_to.len(), message.len());
                    let reply = shared.delivery.deliver(envelope, message).await;
                    let result = if reply.is_success() {
                        "accepted"
                    } else {
                        "refused"
                    };
                    metrics::counter!("outdial_smtp_messages_total", "result" => result)
                        .increment(1);
                    tracing::info!(
                        %peer,
                        recipients,
                        bytes,
                        code = reply.code,
                        "SMTP message {result}"
                    );
                    session.handle_answer(Instant::now(), Answer::Delivered(reply));
                }
                Event::StartTls => {
                    let (Some(acceptor), Some(Conn::Plain(tcp))) =
                        (shared.acceptor.as_ref(), conn.take())
                    else {
                        return;
                    };
                    let handshake =
                        tokio::time::timeout(shared.session.command_timeout, acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            conn = Some(Conn::Tls(Box::new(tls)));
                            session.handle_answer(Instant::now(), Answer::TlsEstablished);
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "STARTTLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                Event::Close => {
                    if let Some(c) = conn.take() {
                        c.linger_close().await;
                    }
                    tracing::debug!(%peer, "SMTP session closed");
                    return;
                }
            }
        }
        if session.is_closed() {
            return;
        }
        let Some(c) = conn.as_mut() else { return };
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            read = c.read(&mut buf), if session.wants_input() => match read {
                Ok(0) | Err(_) => {
                    session.handle_eof();
                    tracing::debug!(%peer, "SMTP client went away");
                    return;
                }
                Ok(n) => session.handle_input(Instant::now(), &buf[..n]),
            },
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            _ = shutdown.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                session.handle_shutdown(Instant::now());
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
