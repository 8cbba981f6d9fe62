//! [`LoopError`]: why a core's loop could not start or had to stop.

/// Why [`run`](super::run) failed. Each message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopError {
    /// `backend = "io-uring"` was asked for, but io_uring cannot be used here.
    #[error("io_uring is not usable here: {reason}; use backend = \"epoll\" (or \"auto\")")]
    IoUringUnavailable {
        /// What the kernel refused, from [`probe_io_uring`](super::probe_io_uring).
        reason: String,
    },
    /// The thread could not be pinned.
    #[error(
        "could not pin the loop thread to CPU {cpu}: is that CPU in this process's affinity \
         mask (taskset, cgroup cpuset)? use fewer cores, or set pin = false"
    )]
    Pin {
        /// The CPU asked for.
        cpu: usize,
    },
    /// `max_datagram` is outside what UDP can carry.
    #[error("max_datagram must be between 1 and 65535 bytes, got {got}")]
    MaxDatagram {
        /// The configured value.
        got: usize,
    },
    /// `max_streams` is more than a core's stream table holds.
    #[error("max_streams must be at most 65536 per core, got {got}; use more cores instead")]
    MaxStreams {
        /// The configured value.
        got: usize,
    },
    /// `realtime_priority` is outside `SCHED_FIFO`'s range.
    #[error("realtime_priority must be 1 to 99, got {got}; leave it unset for normal priority")]
    RealtimePriority {
        /// The configured value.
        got: u8,
    },
    /// The epoll instance could not be created.
    #[error("creating the epoll instance failed: {0}; too many open files? raise `ulimit -n`")]
    Epoll(#[source] std::io::Error),
    /// The driver's `start` failed (typically binding its first socket).
    #[error(
        "the dataplane driver failed to start: {0}; is the address free and local to this host?"
    )]
    DriverStart(#[source] std::io::Error),
    /// Waiting for I/O failed in a way the loop cannot recover from.
    #[error(
        "waiting for I/O on the {backend} backend failed: {source}; restart the core, or try backend = \"epoll\""
    )]
    Wait {
        /// `"io_uring"` or `"epoll"`.
        backend: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
}
