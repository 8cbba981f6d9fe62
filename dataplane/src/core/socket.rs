//! Opening the loop's UDP sockets (non-blocking, large kernel buffers, ICMP errors queued
//! with `IP_RECVERR`) and reading their error queues.
#![allow(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use super::sockaddr;
use crate::icmp::IcmpError;

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
    // ICMP errors (a dead callee's port unreachable) are queued on the socket for
    // `read_error_queue`, also for unconnected sockets. IPv4 errors on an IPv6 socket
    // (IPv4-mapped peers) need the IPv4 option too. Best effort: without it a dead host
    // fails by Timer B, as before.
    let _ = setsockopt(&socket, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
    if addr.is_ipv6() {
        let _ = setsockopt(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1);
    }
    Ok(socket)
}

/// What one read of a socket's error queue found.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Queued {
    /// The queue is empty.
    Empty,
    /// An entry that does not say the destination is unreachable (consumed, ignored).
    Other,
    /// An unreachable destination, and how many octets of the failed datagram were quoted
    /// into the buffer.
    Icmp(IcmpError, usize),
}

/// Bound on error-queue entries read per wake-up: the rest wait for the next one.
pub(crate) const ERRORS_PER_READ: usize = 64;

/// Reads one entry of `fd`'s error queue (`MSG_ERRQUEUE`, non-blocking), copying the start
/// of the datagram that failed into `quoted`. Allocates nothing.
pub(crate) fn read_error_queue(fd: RawFd, quoted: &mut [u8]) -> Queued {
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: quoted.as_mut_ptr().cast(),
        iov_len: quoted.len(),
    };
    // SAFETY: as above.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (&raw mut name).cast();
    header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &raw mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `header` points at a live local (or `quoted`) of the length
    // given beside it, for the duration of the call.
    let received =
        unsafe { libc::recvmsg(fd, &raw mut header, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    let Ok(len) = usize::try_from(received) else {
        return Queued::Empty; // EAGAIN: nothing queued (any other error: nothing readable)
    };
    let name_len = (header.msg_namelen as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `name` is a live local at least `name_len` bytes long.
    let name_bytes =
        unsafe { std::slice::from_raw_parts((&raw const name).cast::<u8>(), name_len) };
    let Some(destination) = sockaddr::decode(name_bytes) else {
        return Queued::Other;
    };
    // SAFETY: `header` was filled by recvmsg; the CMSG macros stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const header) };
    while !cmsg.is_null() {
        // SAFETY: a non-null cmsg from CMSG_FIRSTHDR/NXTHDR lies within `control`.
        let (level, kind, cmsg_len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        let is_recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
        // SAFETY: CMSG_LEN is a pure computation.
        let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
        // `cmsg_len` is a size_t on glibc and a socklen_t on musl.
        #[allow(clippy::unnecessary_cast)]
        let data_len = (cmsg_len as usize).saturating_sub(header_len);
        if is_recverr && data_len >= size_of::<libc::sock_extended_err>() {
            // SAFETY: CMSG_DATA points at `data_len` bytes inside `control`.
            let data =
                unsafe { std::slice::from_raw_parts(libc::CMSG_DATA(cmsg).cast_const(), data_len) };
            let (ee, offender) = data.split_at(size_of::<libc::sock_extended_err>());
            let [origin, icmp_type, code] = [ee[4], ee[5], ee[6]];
            let reporter = sockaddr::decode(offender).map(|a| a.ip());
            return match IcmpError::classify(destination, origin, icmp_type, code, reporter) {
                Some(error) => Queued::Icmp(error, len.min(quoted.len())),
                None => Queued::Other,
            };
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const header, cmsg) };
    }
    Queued::Other
}

/// Set one buffer size, trying the privileged option first. Failures are ignored: the
/// socket still works with the default size.
fn set_buffer(socket: &UdpSocket, forced: libc::c_int, capped: libc::c_int, bytes: i32) {
    if setsockopt_int(socket, forced, bytes).is_err() {
        let _ = setsockopt_int(socket, capped, bytes);
    }
}

fn setsockopt_int(socket: &UdpSocket, option: libc::c_int, value: i32) -> std::io::Result<()> {
    setsockopt(socket, libc::SOL_SOCKET, option, value)
}

fn setsockopt(
    socket: &UdpSocket,
    level: libc::c_int,
    option: libc::c_int,
    value: i32,
) -> std::io::Result<()> {
    // SAFETY: the fd is open for the borrow's duration; the option value points to a live
    // i32 whose size is passed alongside.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
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

    /// Waits (up to 5 s) for the socket's error queue to hold an entry.
    fn next_error(socket: &UdpSocket, quoted: &mut [u8]) -> Queued {
        for _ in 0..500 {
            match read_error_queue(socket.as_raw_fd(), quoted) {
                Queued::Empty => std::thread::sleep(std::time::Duration::from_millis(10)),
                found => return found,
            }
        }
        Queued::Empty
    }

    #[test]
    fn a_datagram_to_a_closed_port_queues_port_unreachable_with_the_datagram_quoted() {
        for (bind, closed) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
            let socket = open_udp(bind.parse().unwrap(), 0).unwrap();
            // A port that was free a moment ago: nothing listens there.
            let dead = UdpSocket::bind((closed, 0)).unwrap().local_addr().unwrap();
            let mut quoted = [0u8; 64];
            assert_eq!(
                read_error_queue(socket.as_raw_fd(), &mut quoted),
                Queued::Empty
            );
            socket.send_to(b"INVITE sip:x SIP/2.0\r\n", dead).unwrap();
            let Queued::Icmp(error, len) = next_error(&socket, &mut quoted) else {
                panic!("no ICMP error queued for {dead}");
            };
            assert_eq!(error.destination, dead);
            assert_eq!(error.reason, crate::icmp::Unreachable::Port);
            assert_eq!(&quoted[..len], b"INVITE sip:x SIP/2.0\r\n");
            assert_eq!(
                read_error_queue(socket.as_raw_fd(), &mut quoted),
                Queued::Empty
            );
            // The error is no datagram: receiving goes on.
            let mut buf = [0u8; 8];
            assert!(socket.recv_from(&mut buf).is_err());
        }
    }

    #[test]
    fn ipv6_loopback_binds() {
        let socket = open_udp("[::1]:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(socket.local_addr().unwrap().is_ipv6());
    }
}
