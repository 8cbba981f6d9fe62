//! Opening the loop's UDP sockets: non-blocking, with large kernel buffers.
#![allow(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Bind a non-blocking UDP socket to `addr` and ask for `buffer_bytes` of receive and send
/// buffer (best effort: `SO_RCVBUFFORCE` when privileged, else `SO_RCVBUF`, which the kernel
/// caps at `net.core.rmem_max`; likewise for sends).
pub(crate) fn open_udp(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    if buffer_bytes > 0 {
        let bytes = i32::try_from(buffer_bytes).unwrap_or(i32::MAX);
        set_buffer(&socket, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, bytes);
        set_buffer(&socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes);
    }
    Ok(socket)
}

/// Set one buffer size, trying the privileged option first. Failures are ignored: the
/// socket still works with the default size.
fn set_buffer(socket: &UdpSocket, forced: libc::c_int, capped: libc::c_int, bytes: i32) {
    if setsockopt_int(socket, forced, bytes).is_err() {
        let _ = setsockopt_int(socket, capped, bytes);
    }
}

fn setsockopt_int(socket: &UdpSocket, option: libc::c_int, value: i32) -> std::io::Result<()> {
    // SAFETY: the fd is open for the borrow's duration; the option value points to a live
    // i32 whose size is passed alongside.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Read back an integer socket option (tests only).
#[cfg(test)]
fn getsockopt_int(socket: &UdpSocket, option: libc::c_int) -> std::io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: value and len are live locals of the sizes the kernel is told.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if result == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_nonblocking_and_get_bigger_buffers() {
        let default = UdpSocket::bind("127.0.0.1:0").unwrap();
        let default_rcv = getsockopt_int(&default, libc::SO_RCVBUF).unwrap();
        let socket = open_udp("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap();
        let mut buf = [0u8; 16];
        let error = socket.recv_from(&mut buf).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock);
        let rcv = getsockopt_int(&socket, libc::SO_RCVBUF).unwrap();
        assert!(
            rcv > default_rcv,
            "SO_RCVBUF {rcv} not above default {default_rcv}"
        );
    }

    #[test]
    fn ipv6_loopback_binds() {
        let socket = open_udp("[::1]:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(socket.local_addr().unwrap().is_ipv6());
    }
}
