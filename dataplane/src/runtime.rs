//! [`Dataplane`]: starts one pinned loop per core and gives control its queues.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::agent::{Agent, AgentConfig, CoreLink};
use crate::api::{Command, Event};
use crate::core::{self, Backend, BackendUsed, LoopConfig, WakeFd};
use crate::sip::BorderConfig;
use crate::sip::hep::{HepConfig, HepStats};

/// Capacity of each core's command queue and event queue.
const QUEUE_CAPACITY: usize = 8192;

/// Everything needed to start the dataplane.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// Number of cores (loops) to run; at least 1.
    pub cores: usize,
    /// SIP address of core 0; core `i` listens on port + `i`.
    pub sip_listen: SocketAddr,
    /// The address written into Via, Contact and SDP; `None` = `sip_listen`'s address.
    pub public_ip: Option<IpAddr>,
    /// RTP port range, split evenly between the cores.
    pub rtp_ports: RangeInclusive<u16>,
    /// RFC 3261 timer T1.
    pub t1: Duration,
    /// RFC 3261 timer T2.
    pub t2: Duration,
    /// RFC 3261 timer T4.
    pub t4: Duration,
    /// User-Agent header value.
    pub user_agent: String,
    /// What strangers may make a core send (`docs/sip.md`, "What a stranger gets").
    pub border: BorderConfig,
    /// Networks whose INVITEs are incoming calls (`docs/sip.md`, "Incoming calls").
    pub inbound_sources: Vec<ipnet::IpNet>,
    /// Incoming INVITEs get `503` while this many calls are live on a core.
    pub max_calls_per_core: usize,
    /// The RFC 4028 session interval INVITEs ask for; `None`: no session timers.
    pub session_expires: Option<Duration>,
    /// Copy every core's SIP to a capture server as HEP v3 (`docs/sip.md`, "HEP capture");
    /// `None` = off.
    pub hep: Option<HepConfig>,
    /// Listen for SIP over TCP too, on each core's SIP port (`docs/sip.md`, "Transports").
    pub sip_tcp: bool,
    /// Requests bound for UDP longer than this go over TCP (RFC 3261 §18.1.1); `None`:
    /// never.
    pub udp_mtu_switch: Option<usize>,
    /// A SIP connection a core opens that is not established within this is given up.
    pub tcp_connect_timeout: Duration,
    /// SIP connections one address may have open to a core at once (accepted ones).
    pub tcp_connections_per_source: u16,
    /// An accepted SIP connection that carried no SIP message this long is closed.
    pub tcp_first_message_timeout: Duration,
    /// Our certificate for SIP over TLS on each core's SIP listener; `None`: not served.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// io_uring, epoll, or whichever works here.
    pub backend: Backend,
    /// Pin core `i`'s loop to CPU `i` (modulo the CPU count).
    pub pin: bool,
    /// Run each core's thread under `SCHED_FIFO` at this priority when the process may
    /// (`core::LoopConfig::realtime_priority`); `None`: normal priority.
    pub realtime_priority: Option<u8>,
    /// Seed for tags, branches, SSRCs and ports.
    pub seed: u64,
}

/// Why the dataplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting cannot work.
    #[error("dataplane configuration: {0}")]
    Config(String),
    /// A core's loop failed before it was ready (socket bind, io_uring setup...).
    #[error("dataplane core {core} failed to start: {message}")]
    Core {
        /// Which core.
        core: usize,
        /// What went wrong, with what to do.
        message: String,
    },
}

struct CoreHandle {
    link: CoreLink,
    wake: Arc<WakeFd>,
    sip_addr: SocketAddr,
    backend: BackendUsed,
    thread: Option<JoinHandle<()>>,
}

/// The running dataplane: one loop thread per core.
pub struct Dataplane {
    cores: Vec<CoreHandle>,
    event_wake: Arc<WakeFd>,
}

impl Dataplane {
    /// Starts every core and waits until each has bound its SIP socket.
    pub fn start(config: DataplaneConfig) -> Result<Self, StartError> {
        if config.cores == 0 {
            return Err(StartError::Config("cores must be at least 1".into()));
        }
        let ranges = split_ports(&config.rtp_ports, config.cores)?;
        let event_wake = Arc::new(WakeFd::new().map_err(|e| StartError::Core {
            core: 0,
            message: format!("cannot create an eventfd: {e}"),
        })?);
        // The CPUs this process may run on (its affinity mask: a container's cpuset, a
        // taskset), in order; core `i` is pinned to the `i`-th of them.
        let cpus: Vec<usize> = core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|id| id.id).collect())
            .unwrap_or_default();
        if config.pin && cpus.is_empty() {
            tracing::warn!("cannot read this process's CPU affinity: cores run unpinned");
        }
        // Built as cores start: if one fails, dropping this stops the ones already running.
        let mut dataplane = Self {
            cores: Vec::with_capacity(config.cores),
            event_wake: Arc::clone(&event_wake),
        };
        for (index, rtp_ports) in ranges.into_iter().enumerate() {
            let port = config
                .sip_listen
                .port()
                .checked_add(index as u16)
                .ok_or_else(|| StartError::Config("SIP port + core index exceeds 65535".into()))?;
            let sip_addr = SocketAddr::new(config.sip_listen.ip(), port);
            let wake = Arc::new(WakeFd::new().map_err(|e| StartError::Core {
                core: index,
                message: format!("cannot create an eventfd: {e}"),
            })?);
            let link = CoreLink {
                commands: Arc::new(ArrayQueue::new(QUEUE_CAPACITY)),
                events: Arc::new(ArrayQueue::new(QUEUE_CAPACITY)),
                event_wake: Arc::clone(&event_wake),
                load: Arc::new(AtomicUsize::new(0)),
                stop: Arc::new(AtomicBool::new(false)),
                alive: Arc::new(AtomicBool::new(true)),
                hep: Arc::default(),
                turns: Arc::default(),
                strangers: Arc::default(),
            };
            let agent_config = AgentConfig {
                sip_listen: sip_addr,
                public_ip: config.public_ip.unwrap_or_else(|| sip_addr.ip()),
                rtp_ports,
                t1: config.t1,
                t2: config.t2,
                t4: config.t4,
                user_agent: config.user_agent.clone(),
                border: config.border,
                seed: config
                    .seed
                    .wrapping_add(index as u64 * 0x9e37_79b9_7f4a_7c15),
                wall_clock: std::time::SystemTime::now,
                core: index,
                inbound_sources: config.inbound_sources.clone(),
                max_calls: config.max_calls_per_core,
                session_expires: config.session_expires,
                hep: config.hep.clone(),
                sip_tcp: config.sip_tcp,
                udp_mtu_switch: config.udp_mtu_switch,
                tcp_connect_timeout: config.tcp_connect_timeout,
                tcp_connections_per_source: config.tcp_connections_per_source,
                tcp_first_message_timeout: config.tcp_first_message_timeout,
                tls_server: config.tls_server.clone(),
            };
            let loop_config = LoopConfig {
                backend: config.backend,
                pin_to_cpu: config
                    .pin
                    .then(|| cpus.get(index % cpus.len().max(1)).copied())
                    .flatten(),
                realtime_priority: config.realtime_priority,
                ..LoopConfig::default()
            };
            let (ready_tx, ready_rx) = mpsc::channel();
            let thread_link = link.clone();
            let thread_wake = Arc::clone(&wake);
            let thread = std::thread::Builder::new()
                .name(format!("outdial-core-{index}"))
                .spawn(move || {
                    // Cleared however the thread ends, panics included.
                    let _alive = AliveGuard(Arc::clone(&thread_link.alive));
                    let mut agent = Agent::new(agent_config, thread_link);
                    agent.notify_when_ready(ready_tx.clone());
                    match core::run(&loop_config, &thread_wake, &mut agent) {
                        Ok(backend) => {
                            tracing::info!(core = index, ?backend, "dataplane core stopped")
                        }
                        Err(e) => {
                            tracing::error!(core = index, error = %e, "dataplane core failed");
                            let _ = ready_tx.send(Err(e.to_string()));
                        }
                    }
                })
                .map_err(|e| StartError::Core {
                    core: index,
                    message: format!("cannot spawn the core thread: {e}"),
                })?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    return Err(StartError::Core {
                        core: index,
                        message,
                    });
                }
                Err(_) => {
                    return Err(StartError::Core {
                        core: index,
                        message: "the core thread exited before it was ready".into(),
                    });
                }
            }
            let backend = resolved_backend(config.backend);
            tracing::info!(core = index, sip = %sip_addr, ?backend, "dataplane core ready");
            dataplane.cores.push(CoreHandle {
                link,
                wake,
                sip_addr,
                backend,
                thread: Some(thread),
            });
        }
        Ok(dataplane)
    }

    /// Number of running cores.
    pub fn core_count(&self) -> usize {
        self.cores.len()
    }

    /// Calls live on `core` now.
    pub fn load(&self, core: usize) -> usize {
        self.cores
            .get(core)
            .map_or(usize::MAX, |c| c.link.load.load(Ordering::Relaxed))
    }

    /// Where `core` receives SIP.
    pub fn sip_addr(&self, core: usize) -> Option<SocketAddr> {
        self.cores.get(core).map(|c| c.sip_addr)
    }

    /// False once `core`'s loop has exited (an I/O error or a bug); it takes no more calls.
    pub fn is_alive(&self, core: usize) -> bool {
        self.cores
            .get(core)
            .is_some_and(|c| c.link.alive.load(Ordering::Acquire))
    }

    /// HEP copies `core` has sent and dropped (zero when capture is off).
    pub fn hep_stats(&self, core: usize) -> HepStats {
        self.cores
            .get(core)
            .map(|c| c.link.hep.get())
            .unwrap_or_default()
    }

    /// SIP connections others opened that `core` closed, by reason.
    pub fn strangers_closed(&self, core: usize) -> crate::agent::StrangersClosed {
        self.cores
            .get(core)
            .map(|c| c.link.strangers.get())
            .unwrap_or_default()
    }

    /// How long `core`'s turns have run so far.
    pub fn turn_stats(&self, core: usize) -> crate::agent::TurnStats {
        self.cores
            .get(core)
            .map(|c| c.link.turns.get())
            .unwrap_or_default()
    }

    /// Which I/O backend `core` runs on.
    pub fn backend(&self, core: usize) -> Option<BackendUsed> {
        self.cores.get(core).map(|c| c.backend)
    }

    /// Queues a command for `core` and wakes it. Gives the command back if the queue is full
    /// or the core does not exist.
    pub fn send(&self, core: usize, command: Command) -> Result<(), Command> {
        let Some(handle) = self.cores.get(core) else {
            return Err(command);
        };
        handle.link.commands.push(command)?;
        handle.wake.notify();
        Ok(())
    }

    /// Signalled whenever any core has pushed events; control reads it (e.g. with tokio's AsyncFd)
    /// and then calls [`Dataplane::drain_events`].
    pub fn event_fd(&self) -> &WakeFd {
        &self.event_wake
    }

    /// Hands every queued event of every core to `f`.
    pub fn drain_events(&self, mut f: impl FnMut(Event)) {
        for core in &self.cores {
            while let Some(event) = core.link.events.pop() {
                f(event);
            }
        }
    }

    /// Stops every core and waits for its thread.
    pub fn shutdown(&mut self) {
        for core in &self.cores {
            core.link.stop.store(true, Ordering::Release);
            core.wake.notify();
        }
        for core in &mut self.cores {
            if let Some(thread) = core.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Clears a core's `alive` flag when its thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What `Auto` resolves to on this machine.
fn resolved_backend(backend: Backend) -> BackendUsed {
    match backend {
        Backend::IoUring => BackendUsed::IoUring,
        Backend::Epoll => BackendUsed::Epoll,
        Backend::Auto => match core::probe_io_uring() {
            Ok(()) => BackendUsed::IoUring,
            Err(_) => BackendUsed::Epoll,
        },
    }
}

/// Splits `range` into `n` contiguous parts of at least two ports each.
fn split_ports(
    range: &RangeInclusive<u16>,
    n: usize,
) -> Result<Vec<RangeInclusive<u16>>, StartError> {
    let (start, end) = (u32::from(*range.start()), u32::from(*range.end()));
    if end < start {
        return Err(StartError::Config(format!(
            "RTP port range {start}..{end} is empty: port_min must not exceed port_max"
        )));
    }
    let total = end - start + 1;
    let per = total / n as u32;
    if per < 2 {
        return Err(StartError::Config(format!(
            "RTP port range {start}..{end} is too small for {n} cores: give each core at least 2 ports"
        )));
    }
    Ok((0..n as u32)
        .map(|i| {
            let lo = start + i * per;
            let hi = if i + 1 == n as u32 { end } else { lo + per - 1 };
            // invariant: lo and hi lie within start..=end, which came from u16s.
            (lo as u16)..=(hi as u16)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_split_evenly_and_cover_the_range() {
        let parts = split_ports(&(20000..=29999), 3).unwrap();
        assert_eq!(parts, vec![20000..=23332, 23333..=26665, 26666..=29999]);
    }

    #[test]
    #[allow(
        clippy::reversed_empty_ranges,
        reason = "an empty range is what is being refused"
    )]
    fn too_small_a_range_is_refused_with_advice() {
        let err = split_ports(&(20000..=20002), 2).unwrap_err().to_string();
        assert!(err.contains("at least 2 ports"), "{err}");
        assert!(split_ports(&(20001..=20000), 1).is_err());
    }
}
