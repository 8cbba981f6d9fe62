//! How a core's loop is set up: [`LoopConfig`], [`Backend`], [`BackendUsed`].

use super::LoopError;

/// Which kernel interface the loop uses.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Backend {
    /// io_uring when [`probe_io_uring`](super::probe_io_uring) passes, else epoll (with a warning).
    #[default]
    Auto,
    /// io_uring only; fail if the kernel or a seccomp profile refuses it.
    IoUring,
    /// epoll through mio.
    Epoll,
}

/// The backend a loop actually ran on.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum BackendUsed {
    /// io_uring with multishot receive and a provided-buffer ring.
    IoUring,
    /// epoll through mio.
    Epoll,
}

impl BackendUsed {
    /// The name used in logs and configuration (`"io_uring"`, `"epoll"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

/// Settings for one core's loop.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoopConfig {
    /// Kernel interface to use.
    pub backend: Backend,
    /// Pin the loop's thread to this CPU before starting.
    pub pin_to_cpu: Option<usize>,
    /// Run the loop's thread under `SCHED_FIFO` at this priority (1–99) when the process may
    /// (root, `CAP_SYS_NICE`, or `RLIMIT_RTPRIO` at least this); otherwise it runs at normal
    /// priority with a warning. `None`: normal priority.
    pub realtime_priority: Option<u8>,
    /// `SO_RCVBUF` and `SO_SNDBUF` for every socket, best effort (default 4 MiB, which SIP
    /// needs above a few thousand calls per second: performance.md §4a).
    pub socket_buffer_bytes: usize,
    /// Largest datagram received or sent; longer ones are dropped (default 65,535).
    pub max_datagram: usize,
    /// TCP streams (accepted and connected) one core holds open at once, at most 65,536
    /// (default 1,024). Accepted ones may take all but an eighth of them (at least one is
    /// kept for `connect`); connections accepted beyond that are closed at once, and
    /// `connect` fails beyond `max_streams`.
    pub max_streams: usize,
    /// Bytes one TCP stream may have queued for a peer that reads too slowly; beyond it the
    /// stream is closed with [`StreamClosed::Overflow`](super::StreamClosed::Overflow)
    /// (default 256 KiB).
    pub max_stream_pending_bytes: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            pin_to_cpu: None,
            realtime_priority: None,
            socket_buffer_bytes: 4 << 20,
            max_datagram: MAX_DATAGRAM,
            max_streams: 1024,
            max_stream_pending_bytes: 256 << 10,
        }
    }
}

/// The largest UDP payload representable in the header's 16-bit length.
const MAX_DATAGRAM: usize = 65_535;
/// The most TCP streams a core may hold: its stream table is sized for them up front.
pub(crate) const MAX_STREAMS: usize = 1 << 16;

impl LoopConfig {
    /// Reject settings the loop cannot honour.
    pub(crate) fn validate(&self) -> Result<(), LoopError> {
        if self.max_datagram == 0 || self.max_datagram > MAX_DATAGRAM {
            return Err(LoopError::MaxDatagram {
                got: self.max_datagram,
            });
        }
        if let Some(priority) = self.realtime_priority
            && !(1..=99).contains(&priority)
        {
            return Err(LoopError::RealtimePriority { got: priority });
        }
        if self.max_streams > MAX_STREAMS {
            return Err(LoopError::MaxStreams {
                got: self.max_streams,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_large_enough_for_sip() {
        let config = LoopConfig::default();
        assert!(config.validate().is_ok());
        assert!(config.socket_buffer_bytes >= 4 << 20);
        assert_eq!(config.backend, Backend::Auto);
    }

    #[test]
    fn out_of_range_datagram_sizes_are_rejected() {
        for bad in [0, 65_536, usize::MAX] {
            let config = LoopConfig {
                max_datagram: bad,
                ..LoopConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(error.to_string().contains("max_datagram"), "{error}");
        }
    }

    #[test]
    fn too_many_streams_are_rejected() {
        let config = LoopConfig {
            max_streams: MAX_STREAMS + 1,
            ..LoopConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("max_streams"), "{error}");
        let most = LoopConfig {
            max_streams: MAX_STREAMS,
            ..LoopConfig::default()
        };
        assert!(most.validate().is_ok());
    }
}
