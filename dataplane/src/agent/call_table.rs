//! [`CallTable`]: a core's calls, reached from a packet or a timer by index, not by hashing.
//!
//! Every received RTP or RTCP datagram names the socket it arrived on, and every media
//! deadline names its call: at a thousand calls a core that is a hundred thousand lookups a
//! second. They go through [`CallKey`]s, indexes into one slab, and a vector indexed by the
//! socket's slot: one bounds-checked load each, instead of a SipHash and a probe of a table
//! too large for the cache. Only control's commands, which name calls by [`CallId`], hash
//! (one lookup per command, not per packet).
//!
//! A key outlives its call when a timer still holds it; the slot it names may by then hold
//! another call, so [`CallTable::by_key_mut`] hands back the [`CallId`] stored with the slot
//! for the caller to compare.

use std::collections::HashMap;

use slab::Slab;

use crate::api::CallId;
use crate::core::SocketId;

/// Which of a call's two media sockets a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Channel {
    /// The even port: RTP.
    Rtp,
    /// The RTP port + 1: RTCP.
    Rtcp,
}

/// A call's index in its core's [`CallTable`]: valid until the call is removed, after which
/// it may name a later call (check the [`CallId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CallKey(u32);

impl CallKey {
    #[cfg(test)]
    pub(super) fn for_test(index: u32) -> Self {
        Self(index)
    }
}

/// Where a media socket's datagrams go.
#[derive(Clone, Copy, Debug)]
struct SocketRoute {
    /// The full id (slot and generation): a datagram for a closed socket whose slot was
    /// reused misses.
    socket: SocketId,
    call: CallKey,
    channel: Channel,
}

/// What the table needs to know of a call: its RTP and RTCP sockets, routed to it while it
/// is here.
pub(super) trait MediaSockets {
    fn media_sockets(&self) -> [SocketId; 2];
}

/// A call in its slot.
#[derive(Debug)]
struct Entry<T> {
    call: CallId,
    value: T,
}

/// Calls by key, by id and by media socket.
#[derive(Debug)]
pub(super) struct CallTable<T> {
    slots: Slab<Entry<T>>,
    by_id: HashMap<CallId, CallKey>,
    /// Indexed by the socket's slot (the low bits of a [`SocketId`], which the loops keep
    /// dense: closed slots are reused first).
    by_socket: Vec<Option<SocketRoute>>,
}

impl<T> Default for CallTable<T> {
    fn default() -> Self {
        Self {
            slots: Slab::new(),
            by_id: HashMap::new(),
            by_socket: Vec::new(),
        }
    }
}

impl<T: MediaSockets> CallTable<T> {
    /// Adds `call`, its media sockets routed to it; `None` if the id is already here.
    pub(super) fn insert(&mut self, call: CallId, value: T) -> Option<CallKey> {
        if self.by_id.contains_key(&call) {
            return None;
        }
        let key = CallKey(u32::try_from(self.slots.vacant_key()).ok()?);
        let [rtp_socket, rtcp_socket] = value.media_sockets();
        self.slots.insert(Entry { call, value });
        self.by_id.insert(call, key);
        self.route(rtp_socket, key, Channel::Rtp);
        self.route(rtcp_socket, key, Channel::Rtcp);
        Some(key)
    }

    /// Removes `call`; its sockets no longer route here.
    pub(super) fn remove(&mut self, call: CallId) -> Option<T> {
        let key = self.by_id.remove(&call)?;
        let entry = self.slots.try_remove(key.0 as usize)?;
        for socket in entry.value.media_sockets() {
            if let Some(route) = self.by_socket.get_mut(socket.slot())
                && route.is_some_and(|route| route.socket == socket)
            {
                *route = None;
            }
        }
        Some(entry.value)
    }
}

impl<T> CallTable<T> {
    pub(super) fn contains(&self, call: CallId) -> bool {
        self.by_id.contains_key(&call)
    }

    pub(super) fn get(&self, call: CallId) -> Option<&T> {
        let key = self.key(call)?;
        self.slots.get(key.0 as usize).map(|entry| &entry.value)
    }

    pub(super) fn get_mut(&mut self, call: CallId) -> Option<&mut T> {
        let key = self.key(call)?;
        self.slots
            .get_mut(key.0 as usize)
            .map(|entry| &mut entry.value)
    }

    /// The key of `call`, for a timer to hold.
    pub(super) fn key(&self, call: CallId) -> Option<CallKey> {
        self.by_id.get(&call).copied()
    }

    /// The call now in `key`'s slot, if any (it may be a later call than the key's).
    pub(super) fn by_key_mut(&mut self, key: CallKey) -> Option<(CallId, &mut T)> {
        self.slots
            .get_mut(key.0 as usize)
            .map(|entry| (entry.call, &mut entry.value))
    }

    /// The call and channel a datagram on `socket` belongs to.
    pub(super) fn by_socket(&self, socket: SocketId) -> Option<(CallKey, Channel)> {
        let route = (*self.by_socket.get(socket.slot())?)?;
        (route.socket == socket).then_some((route.call, route.channel))
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Sockets routed to a call (for tests: none once every call is gone).
    #[cfg(test)]
    pub(super) fn routed_sockets(&self) -> usize {
        self.by_socket.iter().flatten().count()
    }

    fn route(&mut self, socket: SocketId, call: CallKey, channel: Channel) {
        let index = socket.slot();
        if self.by_socket.len() <= index {
            self.by_socket.resize(index + 1, None);
        }
        if let Some(entry) = self.by_socket.get_mut(index) {
            *entry = Some(SocketRoute {
                socket,
                call,
                channel,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(slot: u32, generation: u32) -> SocketId {
        SocketId(generation << 20 | slot)
    }

    /// A call as the table sees it: a name and its two sockets.
    #[derive(Debug, PartialEq)]
    struct Call(&'static str, [SocketId; 2]);

    impl MediaSockets for Call {
        fn media_sockets(&self) -> [SocketId; 2] {
            self.1
        }
    }

    fn call(name: &'static str, rtp: SocketId, rtcp: SocketId) -> Call {
        Call(name, [rtp, rtcp])
    }

    #[test]
    fn packets_and_commands_reach_the_same_call() {
        let mut table = CallTable::default();
        let key = table
            .insert(CallId(7), call("seven", socket(4, 0), socket(5, 0)))
            .expect("new call");
        assert_eq!(table.by_socket(socket(4, 0)), Some((key, Channel::Rtp)));
        assert_eq!(table.by_socket(socket(5, 0)), Some((key, Channel::Rtcp)));
        assert_eq!(table.key(CallId(7)), Some(key));
        assert_eq!(
            table.by_key_mut(key).map(|(id, call)| (id, call.0)),
            Some((CallId(7), "seven"))
        );
        assert_eq!(table.get(CallId(7)).map(|call| call.0), Some("seven"));
        assert!(
            table
                .insert(CallId(7), call("again", socket(6, 0), socket(7, 0)))
                .is_none()
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_removed_call_keeps_no_route_and_its_key_names_the_next_call() {
        let mut table = CallTable::default();
        let first = table
            .insert(CallId(1), call("one", socket(0, 0), socket(1, 0)))
            .expect("new call");
        assert_eq!(
            table.remove(CallId(1)),
            Some(call("one", socket(0, 0), socket(1, 0)))
        );
        assert!(table.is_empty() && table.routed_sockets() == 0);
        assert_eq!(table.by_socket(socket(0, 0)), None);
        // The loop reuses the socket slots with a new generation; the slab reuses the key.
        let second = table
            .insert(CallId(2), call("two", socket(0, 1), socket(1, 1)))
            .expect("new call");
        assert_eq!(first, second);
        assert_eq!(
            table.by_key_mut(first).map(|(call, _)| call),
            Some(CallId(2))
        );
        // A datagram for the old socket (old generation) reaches nothing.
        assert_eq!(table.by_socket(socket(0, 0)), None);
        assert_eq!(table.by_socket(socket(0, 1)), Some((second, Channel::Rtp)));
    }

    #[test]
    fn removing_with_stale_sockets_leaves_the_new_routes() {
        let mut table = CallTable::default();
        table.insert(CallId(1), call("one", socket(3, 0), socket(9, 0)));
        table.remove(CallId(1));
        let key = table
            .insert(CallId(2), call("two", socket(3, 1), socket(9, 1)))
            .expect("new call");
        // A second remove of the first call (already gone) touches nothing.
        assert_eq!(table.remove(CallId(1)), None);
        assert_eq!(table.by_socket(socket(3, 1)), Some((key, Channel::Rtp)));
    }

    #[test]
    fn unknown_sockets_and_keys_miss() {
        let mut table = CallTable::<Call>::default();
        assert_eq!(table.by_socket(socket(1000, 0)), None);
        assert_eq!(table.by_key_mut(CallKey(3)), None);
        assert!(table.get_mut(CallId(3)).is_none());
    }
}
