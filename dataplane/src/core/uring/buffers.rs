//! Memory the kernel reads and writes by address: the provided-buffer ring that multishot
//! receives pick from (`IORING_REGISTER_PBUF_RING`), and the slab of send slots.
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

use super::BUFFER_GROUP;
use crate::core::sockaddr::RawSockAddr;

/// Zeroed heap memory with a chosen alignment, shared with the kernel by address.
/// If the kernel may still use it when the loop ends, it is leaked instead of freed.
#[derive(Debug)]
pub(super) struct RawBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    pub(super) leak: bool,
}

impl RawBuf {
    fn new(size: usize, align: usize) -> std::io::Result<Self> {
        let layout = Layout::from_size_align(size.max(1), align)
            .map_err(|_| std::io::Error::other("buffer size overflows"))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            NonNull::new(raw).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Self {
            ptr,
            layout,
            leak: false,
        })
    }

    fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }
}

/// The provided-buffer ring (`IORING_REGISTER_PBUF_RING`) and the buffers it hands out.
#[derive(Debug)]
pub(super) struct BufRing {
    /// `count` `io_uring_buf` entries, page aligned; entry 0's `resv` is the tail.
    pub(super) entries: RawBuf,
    /// `count` buffers of `buf_len` bytes each.
    pub(super) memory: RawBuf,
    buf_len: usize,
    count: u16,
    /// Our copy of the tail the kernel reads.
    tail: u16,
}

impl BufRing {
    /// Allocate `count` (a power of two) buffers of `buf_len` bytes and offer them all.
    pub(super) fn new(count: u16, buf_len: usize) -> std::io::Result<Self> {
        let entries = RawBuf::new(usize::from(count) * size_of::<BufRingEntry>(), page_size())?;
        let total = usize::from(count)
            .checked_mul(buf_len)
            .ok_or_else(|| std::io::Error::other("receive buffers overflow"))?;
        let memory = RawBuf::new(total, 64)?;
        let mut ring = Self {
            entries,
            memory,
            buf_len,
            count,
            tail: 0,
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        Ok(ring)
    }

    /// Register with `ring` as buffer group [`BUFFER_GROUP`].
    pub(super) fn register(&self, ring: &IoUring) -> std::io::Result<()> {
        // SAFETY: the entries stay allocated until after the ring is dropped (see
        // `UringIo`'s field order and `finish`), or are leaked.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.addr(),
                self.count,
                BUFFER_GROUP,
                0,
            )
        }
    }

    /// The first `len` bytes of buffer `bid`, which the kernel has handed to us.
    pub(super) fn buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.count || len > self.buf_len {
            return None;
        }
        // SAFETY: `bid < count` and `len <= buf_len`, so the range lies inside `memory`.
        // The kernel handed this buffer back in a completion and will not write it again
        // until `recycle` offers it anew, which needs `&mut self`.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.memory
                    .ptr
                    .as_ptr()
                    .add(usize::from(bid) * self.buf_len),
                len,
            )
        })
    }

    /// Offer buffer `bid` to the kernel again.
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let mask = self.count - 1;
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        let addr = self.memory.addr() + (usize::from(bid) * self.buf_len) as u64;
        // SAFETY: `tail & mask < count`, inside the entries allocation; the kernel only
        // reads entries between its head and our published tail, and this one is past it.
        unsafe {
            let entry = &mut *base.add(usize::from(self.tail & mask));
            entry.set_addr(addr);
            entry.set_len(self.buf_len as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `tail` points at entry 0's `resv`, a u16 inside the page-aligned
        // allocation, which the kernel reads as the ring's tail; the release store
        // publishes the entry written above.
        unsafe {
            let tail = BufRingEntry::tail(base).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}

/// One slot of the send slab: what a `SendMsg` points at until it completes.
pub(super) struct SendSlot {
    header: libc::msghdr,
    iov: libc::iovec,
    addr: RawSockAddr,
}

/// Preallocated send buffers; a slot is busy from `Io::send` to its completion.
pub(super) struct SendSlab {
    pub(super) slots: Box<[SendSlot]>,
    /// `slots.len() * slot_len` bytes of payload.
    pub(super) data: RawBuf,
    pub(super) slot_len: usize,
    pub(super) free: Vec<u32>,
}

impl SendSlab {
    pub(super) fn new(slots: usize, slot_len: usize) -> std::io::Result<Self> {
        let data = RawBuf::new(slots * slot_len, 64)?;
        let slots = (0..slots)
            .map(|_| SendSlot {
                // SAFETY: msghdr is a plain C struct; all zeroes is a valid (empty) value.
                header: unsafe { std::mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                addr: RawSockAddr::zeroed(),
            })
            .collect::<Box<[_]>>();
        let free = (0..slots.len() as u32).rev().collect();
        Ok(Self {
            slots,
            data,
            slot_len,
            free,
        })
    }

    /// Fill slot `index` with a datagram and return the msghdr to send, or `None` if the
    /// slot does not exist or the payload does not fit.
    pub(super) fn fill(
        &mut self,
        index: u32,
        to: SocketAddr,
        family_v6: bool,
        payload: &[u8],
    ) -> Option<*const libc::msghdr> {
        if payload.len() > self.slot_len {
            return None;
        }
        let slot_len = self.slot_len;
        let base = self.data.ptr.as_ptr();
        let slot = self.slots.get_mut(index as usize)?;
        // SAFETY: `index < slots.len()`, so the slot's `slot_len` bytes lie inside `data`;
        // this slot is not in flight, so the kernel is not reading it.
        let buf = unsafe { base.add(index as usize * slot_len) };
        // SAFETY: `payload.len() <= slot_len`; the regions cannot overlap (ours vs caller's).
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), buf, payload.len()) };
        slot.addr = RawSockAddr::encode(to, family_v6);
        slot.iov = libc::iovec {
            iov_base: buf.cast(),
            iov_len: payload.len(),
        };
        slot.header.msg_name = slot.addr.as_mut_ptr();
        slot.header.msg_namelen = slot.addr.len();
        slot.header.msg_iov = &raw mut slot.iov;
        slot.header.msg_iovlen = 1;
        slot.header.msg_control = std::ptr::null_mut();
        slot.header.msg_controllen = 0;
        slot.header.msg_flags = 0;
        Some(&raw const slot.header)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant; it takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|size| size.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sockaddr::SOCKADDR_IN6_LEN;

    #[test]
    fn buffer_ring_refuses_out_of_range_buffers() {
        let mut ring = BufRing::new(4, 32).unwrap();
        assert!(ring.buffer(3, 32).is_some());
        assert!(ring.buffer(4, 1).is_none());
        assert!(ring.buffer(0, 33).is_none());
        // Recycling a bogus id changes nothing.
        let tail = ring.tail;
        ring.recycle(9);
        assert_eq!(ring.tail, tail);
        ring.recycle(2);
        assert_eq!(ring.tail, tail.wrapping_add(1));
    }

    #[test]
    fn send_slab_refuses_oversized_payloads_and_unknown_slots() {
        let mut slab = SendSlab::new(2, 8).unwrap();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(slab.fill(0, to, false, &[1; 8]).is_some());
        assert!(slab.fill(1, to, false, &[1; 9]).is_none());
        assert!(slab.fill(2, to, false, &[1; 1]).is_none());
        let header = slab.fill(1, to, true, b"abc").unwrap();
        // SAFETY: the header points into the slab, alive for this scope.
        let (namelen, iov_len) = unsafe { ((*header).msg_namelen, (*(*header).msg_iov).iov_len) };
        assert_eq!(namelen, SOCKADDR_IN6_LEN as u32);
        assert_eq!(iov_len, 3);
    }
}
