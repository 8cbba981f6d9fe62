//! [`WakeFd`]: an eventfd(2) that other threads write to wake a core's loop.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd: any thread may [`WakeFd::notify`]; a core's loop (or a tokio `AsyncFd`)
/// waits for it to become readable and then calls [`WakeFd::drain`].
///
/// The counter saturates rather than overflows, so any number of notifications between
/// two drains coalesce into one wake-up.
#[derive(Debug)]
pub struct WakeFd {
    /// The eventfd, wrapped as a `File` so reads and writes need no unsafe code.
    file: File,
}

impl WakeFd {
    /// Create a non-blocking, close-on-exec eventfd.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a negative return is an error, checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self {
            file: File::from(owned),
        })
    }

    /// Signal the loop. Callable from any thread; never blocks.
    pub fn notify(&self) {
        // EAGAIN means the counter is at its maximum: the fd is readable already, so the
        // wake-up is not lost. No other error is possible for an 8-byte write to an eventfd.
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// Reset the counter so the fd stops being readable. Call before acting on a wake-up,
    /// so a notification racing with the drain is seen on the next turn.
    pub fn drain(&self) {
        let mut counter = [0u8; 8];
        loop {
            match (&self.file).read(&mut counter) {
                Ok(_) => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: nothing was pending.
            }
        }
    }
}

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for WakeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True if `fd` is readable right now (poll with a zero timeout).
    fn readable(fd: &WakeFd) -> bool {
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1, zero timeout.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        ready == 1 && pollfd.revents & libc::POLLIN != 0
    }

    #[test]
    fn notify_makes_readable_and_drain_resets() {
        let wake = WakeFd::new().unwrap();
        assert!(!readable(&wake));
        wake.notify();
        wake.notify();
        assert!(readable(&wake));
        wake.drain();
        assert!(!readable(&wake));
        // Draining an idle fd is harmless.
        wake.drain();
        assert!(!readable(&wake));
    }

    #[test]
    fn notify_from_another_thread() {
        let wake = std::sync::Arc::new(WakeFd::new().unwrap());
        let remote = std::sync::Arc::clone(&wake);
        std::thread::spawn(move || remote.notify()).join().unwrap();
        assert!(readable(&wake));
    }
}
